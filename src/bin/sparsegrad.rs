//! `sparsegrad`: solve and differentiate a sparse system given in Matrix Market files.
//!
//! ```text
//! sparsegrad grad  --matrix A.mtx --rhs B.mtx [--loss sumsq|half-sumsq|sum] [--upstream G.mtx]
//!                  [--method auto|cholesky|lu] [--backend fast|reference]
//!                  [--precision double|mixed|single|auto] --out result.json
//! sparsegrad solve --matrix A.mtx --rhs B.mtx [--method ...] [--backend ...] [--precision ...]
//!                  --out X.mtx
//! ```
//!
//! The forward and adjoint passes are the library's solve node ([`sparsegrad::solve::node`]);
//! `--method auto` is [`Solver::auto`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nalgebra::DMatrix;
use serde_json::json;
use sparsegrad::matrix_market::{array_text, Layout, MatrixMarket};
use sparsegrad::solve::{condition_estimate, node};
use sparsegrad::{Assembly, Error, Implementation, Method, Precision, Solver, Symmetry};

/// Above this estimated condition number the command warns that digits are lost.
const CONDITION_WARNING: f64 = 1e12;

/// Solve A X = B and differentiate it, from Matrix Market files.
///
/// Errors print one line naming the file, line and problem, and exit with status 2; nothing is
/// written then (an older output file of the same name is removed). Every number written is
/// finite and comes from a checked solve.
#[derive(Parser)]
#[command(name = "sparsegrad", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// X = A⁻¹B, the loss, and its gradients with respect to every entry of A and to B, as JSON.
    ///
    /// Fields: {"n", "nnz", "k", "method", "precision", "refinement_steps": {"solve", "adjoint"},
    /// "loss", "rcond", "x": [[…] per column], "grad_rhs": [[…] per column], "grad_values": [one
    /// per entry of A.mtx, in file order], "timings_ms": {"read", "analyze", "factor", "solve",
    /// "adjoint", "total"}}. "precision" is what ran (double, mixed or single; double after an
    /// automatic fallback); "refinement_steps" are the mixed-precision solves' steps (null
    /// otherwise). grad_values[e] = ∂L/∂a_e; for a
    /// symmetric file an off-diagonal entry a_ij stands for a_ij and a_ji, so its gradient is
    /// −Σ_c (λ_ic x_jc + λ_jc x_ic) with Λ = A⁻ᵀ ∂L/∂X; grad_rhs = Λ. rcond is the reciprocal
    /// condition estimate 1/κ₁(A).
    Grad(GradArgs),
    /// X = A⁻¹B, written as a Matrix Market array file.
    Solve(Common),
}

#[derive(Args)]
struct Common {
    /// Square coordinate matrix (real, integer or pattern; general or symmetric). Duplicate
    /// entries are summed; each duplicate gets the gradient of their sum.
    #[arg(long, value_name = "A.mtx")]
    matrix: PathBuf,
    /// n × k right-hand sides: a dense array file or a coordinate file.
    #[arg(long, value_name = "B.mtx")]
    rhs: PathBuf,
    /// auto: Cholesky for a symmetric file, falling back to LU (with a warning) when it is not
    /// positive definite; LU for a general file.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    method: MethodArg,
    /// fast (faer) or reference (nalgebra-sparse, Cholesky only).
    #[arg(long, value_enum, default_value_t = BackendArg::Fast)]
    backend: BackendArg,
    /// Arithmetic of the Cholesky factorization: double (f64); mixed (an f32 factor, every solve
    /// refined in f64 to double accuracy, or an error); single (f32, relative error ≈ κ·6e-8);
    /// auto (mixed for large factors, double otherwise, falling back to double with a warning).
    /// LU always runs in double.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Double)]
    precision: PrecisionArg,
    /// Output file: written to a temporary file beside it and renamed into place on success; on
    /// failure an older file of this name is removed (a stale result is never left behind). It
    /// must not be one of the inputs.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Largest input file read, in MiB: a larger file, or a stream (pipe, device) that goes on
    /// past it, is refused.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    max_input_mib: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct GradArgs {
    #[command(flatten)]
    common: Common,
    /// L = ‖X‖²_F (sumsq), ½‖X‖²_F (half-sumsq) or Σ X (sum).
    #[arg(long, value_enum, default_value_t = LossArg::Sumsq)]
    loss: LossArg,
    /// ∂L/∂X (n × k) given directly; no loss is reported then.
    #[arg(long, value_name = "G.mtx")]
    upstream: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum MethodArg {
    Auto,
    Cholesky,
    Lu,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum PrecisionArg {
    Double,
    Mixed,
    Single,
    Auto,
}

/// The JSON name of a precision that ran.
fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "single",
        Precision::Mixed => "mixed",
        _ => "double",
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Fast,
    Reference,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Sumsq,
    HalfSumsq,
    Sum,
}

/// A dense block from a coordinate file may be at most this many values, or 64 per stored
/// entry and row if that is more: memory follows what the file holds, not what it declares.
const DENSE_EXPANSION_FLOOR: usize = 1 << 24;

/// Reads a Matrix Market file of at most `max_mib` MiB.
fn read_file(path: &Path, max_mib: u64) -> Result<MatrixMarket, String> {
    MatrixMarket::read_with_limit(path, max_mib.saturating_mul(1 << 20)).map_err(|e| match e {
        Error::Io { ref reason, .. } if reason.contains("input limit") => {
            format!("{e} (raise it with --max-input-mib)")
        }
        e => e.to_string(),
    })
}

/// The n × k dense block (array or coordinate file) that `path` held, checked finite.
fn block_of(m: MatrixMarket, path: &Path, n: usize, what: &str) -> Result<DMatrix<f64>, String> {
    let name = path.display();
    if m.nrows != n {
        return Err(format!("{name}: {what} has {} rows but A has {n}", m.nrows));
    }
    if m.ncols == 0 {
        return Err(format!("{name}: {what} has no columns"));
    }
    if m.layout == Layout::Coordinate {
        let limit = m
            .entries
            .len()
            .saturating_add(n)
            .saturating_mul(64)
            .max(DENSE_EXPANSION_FLOOR);
        if n.saturating_mul(m.ncols) > limit {
            return Err(format!(
                "{name}: {what} declares {n} × {} = {} dense values but stores {} entries; a coordinate file is expanded to at most max(2^24, 64·(entries + rows)) = {limit} values (write it as an array file)",
                m.ncols,
                n as u128 * m.ncols as u128,
                m.entries.len()
            ));
        }
    }
    let dense = m.to_dense().map_err(|e| format!("{name}: {e}"))?;
    if let Some(k) = dense.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{name}: {what} has the non-finite value {} at (row {}, column {}) after summing duplicate entries",
            dense[k],
            k % n + 1,
            k / n + 1
        ));
    }
    Ok(dense)
}

struct Progress {
    quiet: bool,
    start: Instant,
}

impl Progress {
    fn step(&self, what: &str) {
        if !self.quiet {
            eprintln!(
                "[{:>8.1} ms] {what}",
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn columns(m: &DMatrix<f64>) -> Vec<&[f64]> {
    m.as_slice().chunks(m.nrows().max(1)).collect()
}

/// The same file as `b` (also through links), when both exist.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Writes `text` to `path` through a temporary file in the same directory, renamed into place
/// once it is complete and synced: a full disk or a crash never leaves a truncated output.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let name = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{name}: not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{name}: {e}")
    })
}

fn run(command: Command) -> Result<(), String> {
    let (args, grad) = match command {
        Command::Grad(g) => (g.common, Some((g.loss, g.upstream))),
        Command::Solve(c) => (c, None),
    };
    let mut inputs = vec![&args.matrix, &args.rhs];
    inputs.extend(grad.as_ref().and_then(|g| g.1.as_ref()));
    if let Some(input) = inputs.iter().find(|i| same_file(&args.out, i)) {
        return Err(format!(
            "--out {} is the input file {}: refusing to overwrite an input (choose another output)",
            args.out.display(),
            input.display()
        ));
    }
    let result = compute(&args, grad);
    if result.is_err() && std::fs::symlink_metadata(&args.out).is_ok_and(|m| m.is_file()) {
        // A stale result from an earlier run must not pass for this one's.
        if std::fs::remove_file(&args.out).is_ok() {
            eprintln!(
                "note: removed the older {} (this run failed)",
                args.out.display()
            );
        }
    }
    result
}

/// The files read: A (coordinate), B and the optional upstream gradient.
struct Inputs {
    a: MatrixMarket,
    b: DMatrix<f64>,
    upstream: Option<DMatrix<f64>>,
}

/// Reads and checks the input files.
fn read_inputs(
    args: &Common,
    upstream: Option<&PathBuf>,
    progress: &Progress,
) -> Result<Inputs, String> {
    let a_name = args.matrix.display();
    match upstream {
        Some(g) => progress.step(&format!(
            "reading {a_name}, {} and {}",
            args.rhs.display(),
            g.display()
        )),
        None => progress.step(&format!("reading {a_name} and {}", args.rhs.display())),
    }
    // The files are read (and parsed) concurrently; their errors are reported in the order A,
    // B, the upstream gradient, as when they were read one after the other.
    let limit = args.max_input_mib;
    let (a, (b, g)) = rayon::join(
        || read_file(&args.matrix, limit),
        || {
            rayon::join(
                || read_file(&args.rhs, limit),
                || upstream.map(|path| read_file(path, limit)),
            )
        },
    );
    let a = a?;
    if a.layout != Layout::Coordinate {
        return Err(format!(
            "{a_name}: A must be a coordinate file, found an array file"
        ));
    }
    if a.nrows != a.ncols {
        return Err(format!(
            "{a_name}: matrix is {}×{}, not square",
            a.nrows, a.ncols
        ));
    }
    let n = a.nrows;
    let b = block_of(b?, &args.rhs, n, "the right-hand side")?;
    let upstream = match (upstream, g) {
        (Some(path), Some(g)) => {
            let g = block_of(g?, path, n, "the upstream gradient")?;
            if g.ncols() != b.ncols() {
                return Err(format!(
                    "{}: upstream gradient has {} columns but B has {}",
                    path.display(),
                    g.ncols(),
                    b.ncols()
                ));
            }
            Some(g)
        }
        _ => None,
    };
    Ok(Inputs { a, b, upstream })
}

/// One parameter per file entry: values = M p with M the 0/1 map onto the stored entries, so
/// p̄ = Mᵀ Ā gives every duplicate the gradient of their sum.
fn assembly_of(a: &MatrixMarket) -> sparsegrad::Result<(Assembly, Vec<f64>)> {
    let symmetry = if a.symmetric {
        Symmetry::Lower
    } else {
        Symmetry::General
    };
    let mut builder = Assembly::builder(a.nrows, a.ncols, a.entries.len()).symmetry(symmetry);
    for (e, &(i, j, _)) in a.entries.iter().enumerate() {
        builder.push_entry(i, j, e, 1.0);
    }
    let asm = builder.build()?;
    let p: Vec<f64> = a.entries.iter().map(|e| e.2).collect();
    let values = asm.values(&p)?;
    Ok((asm, values))
}

/// The solver the flags ask for.
fn solver_of(args: &Common, symmetric: bool, a_name: &str) -> Result<Solver, String> {
    Ok(match (args.method, symmetric) {
        (MethodArg::Cholesky, false) => {
            return Err(format!(
                "{a_name}: Cholesky needs a symmetric file; this one is general (use --method lu)"
            ))
        }
        (MethodArg::Cholesky, true) => Solver::cholesky().with_residual_check(Some(1e-8)),
        (MethodArg::Lu, _) => Solver::lu(),
        (MethodArg::Auto, _) => Solver::auto(),
    }
    .with_implementation(match args.backend {
        BackendArg::Fast => Implementation::Fast,
        BackendArg::Reference => Implementation::Reference,
    })
    .with_precision(match args.precision {
        PrecisionArg::Double => Precision::F64,
        PrecisionArg::Mixed => Precision::Mixed,
        PrecisionArg::Single => Precision::F32,
        PrecisionArg::Auto => Precision::Auto,
    }))
}

/// Warns on stderr when κ₁ > [`CONDITION_WARNING`] (digits lost, at most all 16).
fn warn_conditioning(a_name: &str, kappa: f64) {
    if kappa > CONDITION_WARNING || kappa.is_nan() {
        let lost = kappa.log10();
        let digits = if lost >= 15.5 || kappa.is_nan() {
            "all 16 digits of X and of the gradients may be wrong".to_string()
        } else {
            format!("about {lost:.0} of 16 digits of X and of the gradients are lost")
        };
        eprintln!(
            "warning: {a_name}: matrix is ill-conditioned: estimated condition number {kappa:e} (reciprocal {:e}); {digits}",
            1.0 / kappa
        );
    }
}

/// Milliseconds of each phase.
struct Timings {
    read: f64,
    analyze: f64,
    factor: f64,
    solve: f64,
}

fn compute(args: &Common, grad: Option<(LossArg, Option<PathBuf>)>) -> Result<(), String> {
    let total = Instant::now();
    let progress = Progress {
        quiet: args.quiet,
        start: total,
    };
    let a_name = args.matrix.display().to_string();
    let err_a = |e: Error| format!("{a_name}: {e}");

    let t = Instant::now();
    let Inputs { a, b, upstream } =
        read_inputs(args, grad.as_ref().and_then(|g| g.1.as_ref()), &progress)?;
    let t_read = ms(t);
    let n = a.nrows;
    let (asm, values) = assembly_of(&a).map_err(err_a)?;
    let structure = asm.structure();
    let solver = solver_of(args, a.symmetric, &a_name)?;
    progress.step(&format!(
        "analyzing (n = {n}, {} stored entries)",
        structure.nnz()
    ));
    let t = Instant::now();
    solver.analyze(structure).map_err(err_a)?;
    let t_analyze = ms(t);
    progress.step("factoring");
    let t = Instant::now();
    let factor = node::factor(&solver, structure, &values).map_err(err_a)?;
    let t_factor = ms(t);
    progress.step("solving");
    let t = Instant::now();
    let x = node::solve(&solver, factor.as_ref(), structure, &values, &b).map_err(err_a)?;
    let t_solve = ms(t);
    let warned = factor.fallback_reason().map(str::to_owned);
    if let Some(reason) = &warned {
        eprintln!("warning: {a_name}: {reason}");
    }
    let kappa = condition_estimate(structure, &values, factor.as_ref()).map_err(err_a)?;
    warn_conditioning(&a_name, kappa);

    let Some((loss_kind, _)) = grad else {
        write_atomically(&args.out, &array_text(&x))?;
        progress.step(&format!("wrote {}", args.out.display()));
        return Ok(());
    };
    let method = factor.method().map_or("other", Method::name);
    let timings = Timings {
        read: t_read,
        analyze: t_analyze,
        factor: t_factor,
        solve: t_solve,
    };
    let (loss, g) = match (&upstream, loss_kind) {
        (Some(g), _) => (None, g.clone()),
        (None, LossArg::Sum) => (Some(x.sum()), DMatrix::from_element(n, x.ncols(), 1.0)),
        (None, LossArg::HalfSumsq) => (Some(0.5 * x.norm_squared()), x.clone()),
        (None, LossArg::Sumsq) => (Some(x.norm_squared()), &x * 2.0),
    };
    progress.step("adjoint solve and gradients");
    let t = Instant::now();
    let adjoint = node::adjoint(factor.as_ref(), structure, &g, &x, true).map_err(err_a)?;
    let (lambda, grad_stored) = (adjoint.lambda, adjoint.grad_values);
    let mut grad_entries = vec![0.0; a.entries.len()];
    asm.adjoint_into(&grad_stored.unwrap_or_default(), &mut grad_entries)
        .map_err(err_a)?;
    let t_adjoint = ms(t);
    check_finite_outputs(&a_name, loss, &lambda, &grad_entries)?;
    // After the adjoint: an automatic fallback to f64 may have happened in either solve.
    if let (None, Some(reason)) = (&warned, factor.fallback_reason()) {
        eprintln!("warning: {a_name}: {reason}");
    }
    let precision = precision_name(factor.precision());
    let info = factor.solve_info();
    let steps = match (info.forward, info.adjoint) {
        (Some(f), Some(a)) if precision == "mixed" => {
            json!({"solve": f.iterations, "adjoint": a.iterations})
        }
        _ => serde_json::Value::Null,
    };
    let result = json!({
        "n": n,
        "nnz": a.entries.len(),
        "k": x.ncols(),
        "method": method,
        "precision": precision,
        "refinement_steps": steps,
        "loss": loss,
        "rcond": if kappa > 0.0 { Some(1.0 / kappa) } else { None },
        "x": columns(&x),
        "grad_rhs": columns(&lambda),
        "grad_values": grad_entries,
        "timings_ms": {
            "read": timings.read,
            "analyze": timings.analyze,
            "factor": timings.factor,
            "solve": timings.solve,
            "adjoint": t_adjoint,
            "total": ms(total),
        },
    });
    let text =
        serde_json::to_string(&result).map_err(|e| format!("{}: {e}", args.out.display()))?;
    write_atomically(&args.out, &(text + "\n"))?;
    progress.step(&format!("wrote {}", args.out.display()));
    Ok(())
}

/// Every number written is finite: a loss or gradient that overflowed is an error, not null.
fn check_finite_outputs(
    a_name: &str,
    loss: Option<f64>,
    lambda: &DMatrix<f64>,
    grad_entries: &[f64],
) -> Result<(), String> {
    if let Some(l) = loss.filter(|l| !l.is_finite()) {
        return Err(format!(
            "{a_name}: the loss overflowed ({l}): X is finite but too large for the loss in floating point"
        ));
    }
    for (what, data) in [
        ("the gradient of B", lambda.as_slice()),
        ("the gradient of A", grad_entries),
    ] {
        if let Some(k) = data.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{a_name}: {what} overflowed: entry {k} is {}",
                data[k]
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
