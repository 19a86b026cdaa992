//! `sparsegrad`: solve and differentiate a sparse system given in Matrix Market files.
//!
//! ```text
//! sparsegrad grad  --matrix A.mtx --rhs B.mtx [--loss sumsq|half-sumsq|sum] [--upstream G.mtx]
//!                  [--method auto|cholesky|lu] [--backend fast|reference] --out result.json
//! sparsegrad solve --matrix A.mtx --rhs B.mtx [--method ...] [--backend ...] --out X.mtx
//! ```

use std::process::ExitCode;
use std::time::Instant;

use nalgebra::DMatrix;
use sparsegrad::matrix_market::{write_array, Layout, MatrixMarket};
use sparsegrad::sparse::accumulate_outer;
use sparsegrad::{Assembly, Backend, Error, Factor, Solver, Symmetry};

const HELP: &str = "sparsegrad — solve A X = B and differentiate it, from Matrix Market files

usage:
  sparsegrad grad  --matrix A.mtx --rhs B.mtx [--loss sumsq|half-sumsq|sum] [--upstream G.mtx]
                   [--method auto|cholesky|lu] [--backend fast|reference] [--quiet] --out result.json
  sparsegrad solve --matrix A.mtx --rhs B.mtx [--method ...] [--backend ...] [--quiet] --out X.mtx

A.mtx     square coordinate matrix (real, integer or pattern; general or symmetric). Duplicate
          entries are summed; each duplicate gets the gradient of their sum.
B.mtx     n × k right-hand sides: a dense `array` file or a coordinate file.
--loss    L = ‖X‖²_F (sumsq, default), ½‖X‖²_F (half-sumsq) or Σ X (sum).
--upstream G.mtx gives ∂L/∂X (n × k) directly; no loss is reported then.
--method  auto (default): Cholesky for a `symmetric` file, falling back to LU with a warning when it
          is not positive definite; LU for a `general` file.

result.json: {\"n\", \"nnz\", \"k\", \"method\", \"loss\", \"x\": [[…] per column], \"grad_rhs\": [[…] per column],
  \"grad_values\": [one per entry of A.mtx, in file order], \"timings_ms\": {\"read\", \"analyze\",
  \"factor\", \"solve\", \"adjoint\", \"total\"}}
  grad_values[e] = ∂L/∂a_e. For a symmetric file a stored off-diagonal entry a_ij stands for both
  a_ij and a_ji, so its gradient counts both positions: −Σ_c (λ_ic x_jc + λ_jc x_ic), with
  Λ = A⁻ᵀ ∂L/∂X; a diagonal entry gets −Σ_c λ_ic x_ic. grad_rhs = Λ.

Errors print one line naming the file, line and problem, and exit with status 2; nothing is
written then.";

struct Args {
    command: String,
    matrix: String,
    rhs: String,
    out: String,
    loss: String,
    upstream: Option<String>,
    method: String,
    backend: Backend,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let command = args
        .next()
        .ok_or("missing command (grad | solve); see --help")?;
    if command == "--help" || command == "-h" {
        println!("{HELP}");
        std::process::exit(0);
    }
    if command != "grad" && command != "solve" {
        return Err(format!("unknown command '{command}' (grad | solve)"));
    }
    let mut a = Args {
        command,
        matrix: String::new(),
        rhs: String::new(),
        out: String::new(),
        loss: "sumsq".into(),
        upstream: None,
        method: "auto".into(),
        backend: Backend::Fast,
        quiet: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--quiet" {
            a.quiet = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{HELP}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--matrix" => a.matrix = value,
            "--rhs" => a.rhs = value,
            "--out" => a.out = value,
            "--loss" if ["sumsq", "half-sumsq", "sum"].contains(&value.as_str()) => a.loss = value,
            "--upstream" => a.upstream = Some(value),
            "--method" if ["auto", "cholesky", "lu"].contains(&value.as_str()) => a.method = value,
            "--backend" => {
                a.backend = match value.as_str() {
                    "fast" => Backend::Fast,
                    "reference" => Backend::Reference,
                    other => return Err(format!("unknown backend '{other}' (fast | reference)")),
                }
            }
            "--loss" | "--method" => {
                return Err(format!("invalid value '{value}' for {flag}; see --help"))
            }
            other => return Err(format!("unknown option '{other}'; see --help")),
        }
    }
    for (v, f) in [
        (&a.matrix, "--matrix"),
        (&a.rhs, "--rhs"),
        (&a.out, "--out"),
    ] {
        if v.is_empty() {
            return Err(format!("{f} is required"));
        }
    }
    Ok(a)
}

/// Reads an n × k dense block (array or coordinate file).
fn read_block(path: &str, n: usize, what: &str) -> Result<DMatrix<f64>, String> {
    let m = MatrixMarket::read(path).map_err(|e| e.to_string())?;
    if m.nrows != n {
        return Err(format!("{path}: {what} has {} rows but A has {n}", m.nrows));
    }
    if m.ncols == 0 {
        return Err(format!("{path}: {what} has no columns"));
    }
    Ok(m.to_dense())
}

fn json_array(values: impl Iterator<Item = f64>) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("[");
    for (i, v) in values.enumerate() {
        let _ = write!(s, "{}{v:e}", if i == 0 { "" } else { "," });
    }
    s.push(']');
    s
}

fn json_columns(m: &DMatrix<f64>) -> String {
    let cols: Vec<String> = m
        .column_iter()
        .map(|c| json_array(c.iter().copied()))
        .collect();
    format!("[{}]", cols.join(","))
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

fn run(args: Args) -> Result<(), String> {
    let total = Instant::now();
    let progress = Progress {
        quiet: args.quiet,
        start: total,
    };
    let err_a = |e: Error| format!("{}: {e}", args.matrix);

    progress.step(&format!("reading {}", args.matrix));
    let t = Instant::now();
    let a = MatrixMarket::read(&args.matrix).map_err(|e| e.to_string())?;
    if a.layout != Layout::Coordinate {
        return Err(format!(
            "{}: A must be a coordinate file, found an array file",
            args.matrix
        ));
    }
    if a.nrows != a.ncols {
        return Err(format!(
            "{}: matrix is {}×{}, not square",
            args.matrix, a.nrows, a.ncols
        ));
    }
    let n = a.nrows;
    progress.step(&format!("reading {}", args.rhs));
    let b = read_block(&args.rhs, n, "the right-hand side")?;
    let upstream = match &args.upstream {
        Some(path) => {
            let g = read_block(path, n, "the upstream gradient")?;
            if g.ncols() != b.ncols() {
                return Err(format!(
                    "{path}: upstream gradient has {} columns but B has {}",
                    g.ncols(),
                    b.ncols()
                ));
            }
            Some(g)
        }
        None => None,
    };
    let t_read = ms(t);

    // One parameter per file entry: values = M p with M the 0/1 map onto the stored entries, so
    // p̄ = Mᵀ Ā gives every duplicate the gradient of their sum.
    let symmetry = if a.symmetric {
        Symmetry::Lower
    } else {
        Symmetry::General
    };
    let mut builder = Assembly::builder(n, n, a.entries.len()).symmetry(symmetry);
    for (e, &(i, j, _)) in a.entries.iter().enumerate() {
        builder.push_entry(i, j, e, 1.0);
    }
    let asm = builder.build().map_err(err_a)?;
    let p: Vec<f64> = a.entries.iter().map(|e| e.2).collect();
    let values = asm.values(&p).map_err(err_a)?;
    let structure = asm.structure();

    let mut method = match (args.method.as_str(), a.symmetric) {
        ("lu", _) | ("auto", false) => "lu",
        ("cholesky", false) => {
            return Err(format!(
                "{}: Cholesky needs a symmetric file; this one is general (use --method lu)",
                args.matrix
            ))
        }
        _ => "cholesky",
    };
    let solver_for = |m: &str| {
        if m == "lu" {
            Solver::lu()
        } else {
            Solver::cholesky().with_residual_check(Some(1e-8))
        }
    };
    let mut solver = solver_for(method).with_backend(args.backend);
    progress.step(&format!(
        "analyzing ({method}, n = {n}, {} stored entries)",
        structure.nnz()
    ));
    let t = Instant::now();
    solver.analyze(structure).map_err(err_a)?;
    let mut t_analyze = ms(t);
    progress.step("factoring");
    let t = Instant::now();
    let factor: std::sync::Arc<Factor> = match solver.factorize(structure, &values) {
        Ok(f) => f,
        Err(Error::NotPositiveDefinite { column, .. }) if args.method == "auto" => {
            eprintln!(
                "warning: {}: not positive definite (column {column}); falling back to LU",
                args.matrix
            );
            method = "lu";
            solver = solver_for(method);
            let t2 = Instant::now();
            solver.analyze(structure).map_err(err_a)?;
            t_analyze += ms(t2);
            solver.factorize(structure, &values).map_err(err_a)?
        }
        Err(e) => return Err(err_a(e)),
    };
    let t_factor = ms(t);
    progress.step("solving");
    let t = Instant::now();
    let mut x = b.clone();
    factor.solve_in_place(&mut x).map_err(err_a)?;
    solver
        .check_residual(structure, &values, &x, &b)
        .map_err(err_a)?;
    let t_solve = ms(t);

    if args.command == "solve" {
        write_array(&args.out, &x).map_err(|e| e.to_string())?;
        progress.step(&format!("wrote {}", args.out));
        return Ok(());
    }

    let (loss, g) = match (&upstream, args.loss.as_str()) {
        (Some(g), _) => (None, g.clone()),
        (None, "sum") => (Some(x.sum()), DMatrix::from_element(n, x.ncols(), 1.0)),
        (None, "half-sumsq") => (Some(0.5 * x.norm_squared()), x.clone()),
        (None, _) => (Some(x.norm_squared()), &x * 2.0),
    };
    progress.step("adjoint solve and gradients");
    let t = Instant::now();
    let mut lambda = g;
    factor
        .solve_transpose_in_place(&mut lambda)
        .map_err(err_a)?;
    let mut grad_stored = vec![0.0; structure.nnz()];
    accumulate_outer(structure, &lambda, &x, -1.0, &mut grad_stored);
    let mut grad_entries = vec![0.0; a.entries.len()];
    asm.adjoint_into(&grad_stored, &mut grad_entries);
    let t_adjoint = ms(t);

    let json = format!(
        "{{\"n\":{n},\"nnz\":{},\"k\":{},\"method\":\"{method}\",\"loss\":{},\"x\":{},\"grad_rhs\":{},\"grad_values\":{},\"timings_ms\":{{\"read\":{t_read:.3},\"analyze\":{t_analyze:.3},\"factor\":{t_factor:.3},\"solve\":{t_solve:.3},\"adjoint\":{t_adjoint:.3},\"total\":{:.3}}}}}\n",
        a.entries.len(),
        x.ncols(),
        loss.map_or("null".to_string(), |l| format!("{l:e}")),
        json_columns(&x),
        json_columns(&lambda),
        json_array(grad_entries.iter().copied()),
        ms(total)
    );
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out))?;
    progress.step(&format!("wrote {}", args.out));
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
