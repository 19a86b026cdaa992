//! The seed project's benchmark, done properly: value and gradient of ‖A(θ)⁻¹B‖²_F with
//! A = I + L(θ) for a cyclic chain, a k×k grid or a k×k×k grid, or A = K(θ) the stiffness of a
//! clamped block of k³ hexahedra (`elastic3`, [`ElasticBlock`]) — the exact problems of
//! benches/compare/peer_bench.py (θ_e = 1.5 + 0.5 sin e, b[i, c] = 1 + 0.5 cos(i + 7c); the cold
//! regime evaluates θ0 + 1e-3·i), so losses agree with the peers' to ~1e-12.
//!
//! Regimes (median over `--repeat` timed calls after one warm-up):
//! - `cold`: a new Assembly/Structure every call — build, symbolic analysis, numeric
//!   factorization, solves, gradient (what the peers pay on every call);
//! - `warm`: the same structure, new θ: numeric refactorization only;
//! - `limit`: the same backend's numeric factorization plus one forward and one adjoint solve,
//!   called directly without the tape.
//!
//! ```text
//! cargo run --release --example seed_benchmark -- --case chain|grid|grid3|elastic3 --n N
//!     [--backend fast|reference|lu] [--precision double|mixed|single|auto] [--rhs K]
//!     [--repeat R] [--json] [--warm-only]
//! ```
//! `--warm-only` skips the cold regime (for profiling the warm path).
//! With `--json` it prints one JSON object per line; the last line is the cold measurement:
//! `{"case":"chain","n":65536,"backend":"fast","regime":"cold","rhs":1,"ms":…, …}`.

use std::process::ExitCode;
use std::time::Instant;

use nalgebra::DMatrix;
use sparsegrad::problems::elasticity::ElasticBlock;
use sparsegrad::problems::graph::{chain_edges, grid3_edges, grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Implementation, Ordering, Precision, Result, Solver, Tape};

/// The peers' benchmark problem: cold / warm / limit with a breakdown.
#[derive(clap::Parser)]
struct Args {
    /// chain, grid (k², 5-point), grid3 (k³, 7-point) or elastic3 (k³ hexahedra, 3 unknowns per
    /// node, clamped face; k = round(∛(n/3))).
    #[arg(long, default_value = "chain")]
    case: String,
    /// Number of unknowns (grid: rounded to a square).
    #[arg(long, default_value_t = 65536)]
    n: usize,
    /// Right-hand sides.
    #[arg(long, default_value_t = 1)]
    rhs: usize,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// fast, reference or lu.
    #[arg(long, default_value = "fast")]
    backend: String,
    /// Ordering: auto, amd, nd (nested dissection) or rcm (reverse Cuthill–McKee); for LU the column ordering (auto: COLAMD;
    /// amd / nd on A + Aᵀ).
    #[arg(long, default_value = "auto")]
    ordering: String,
    /// Arithmetic of the fast backend's Cholesky: double, mixed, single or auto.
    #[arg(long, default_value = "double")]
    precision: String,
    /// One JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// Only the warm figure.
    #[arg(long)]
    warm_only: bool,
    /// Also measure this machine's dense GEMM speed (faer matmul, all threads) and report the
    /// numeric factorization's GFLOP/s as a fraction of it.
    #[arg(long)]
    gemm: bool,
    /// Relabel the nodes of the graph cases (chain, grid, grid3) by a random permutation from
    /// this seed, so that A's own order carries no locality (the "node-shuffled" cases).
    #[arg(long)]
    shuffle: Option<u64>,
}

/// Dense GEMM speed in GFLOP/s: faer's matmul of two n × n matrices on all rayon threads, best of
/// three after a warm-up (2n³ flops per product).
fn gemm_peak_gflops(n: usize) -> f64 {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, Par};
    let a = Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let b = Mat::<f64>::from_fn(n, n, |i, j| ((i * 5 + j) % 13) as f64 - 6.0);
    let mut c = Mat::<f64>::zeros(n, n);
    let mut best = f64::INFINITY;
    for round in 0..4 {
        let t = Instant::now();
        matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            Par::rayon(0),
        );
        if round > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&c);
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A `/proc/self/status` field in MiB (`VmHWM`: peak RSS, `VmRSS`: current RSS).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

struct Case {
    n: usize,
    /// Parameters: edges of the graph cases, elements of `elastic3`.
    m: usize,
    edges: Vec<(usize, usize)>,
    /// `elastic3`: the block of hexahedra.
    block: Option<ElasticBlock>,
    theta0: Vec<f64>,
    b: DMatrix<f64>,
}

impl Case {
    fn build(&self) -> Result<Assembly> {
        match self.block {
            Some(block) => block.assembly(POISSON),
            None => laplacian_assembly(self.n, &self.edges, 1.0),
        }
    }
}

/// Poisson ratio of the `elastic3` case (the peers use the same).
const POISSON: f64 = 0.3;

fn case(
    name: &str,
    n_req: usize,
    rhs: usize,
    shuffle: Option<u64>,
) -> std::result::Result<Case, String> {
    let mut block = None;
    let (n, edges) = match name {
        "chain" => (n_req, chain_edges(n_req).map_err(|e| e.to_string())?),
        "grid" => {
            let k = (n_req as f64).sqrt().round() as usize;
            (k * k, grid_edges(k).map_err(|e| e.to_string())?)
        }
        "grid3" => {
            let k = (n_req as f64).cbrt().round() as usize;
            (k * k * k, grid3_edges(k).map_err(|e| e.to_string())?)
        }
        "elastic3" => {
            let k = (n_req as f64 / 3.0).cbrt().round().max(1.0) as usize;
            let b = ElasticBlock::cube(k);
            block = Some(b);
            (b.n_unknowns(), vec![])
        }
        other => {
            return Err(format!(
                "unknown case '{other}' (chain | grid | grid3 | elastic3)"
            ))
        }
    };
    let edges = match shuffle {
        Some(_) if block.is_some() => {
            return Err("--shuffle relabels the graph cases (chain, grid, grid3) only".into())
        }
        Some(seed) => {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut label: Vec<usize> = (0..n).collect();
            label.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            edges.iter().map(|&(a, b)| (label[a], label[b])).collect()
        }
        None => edges,
    };
    let m = block.map_or(edges.len(), |b| b.n_elements());
    let theta0 = (0..m).map(|e| 1.5 + 0.5 * (e as f64).sin()).collect();
    let b = DMatrix::from_fn(n, rhs, |i, c| 1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos());
    Ok(Case {
        n,
        m,
        edges,
        block,
        theta0,
        b,
    })
}

/// Value and gradient through the tape; returns (loss, ‖∂L/∂θ‖).
fn value_and_gradient(
    asm: &Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    solver: &Solver,
) -> Result<(f64, f64)> {
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(theta.len(), 1, theta));
    let a = tape.assemble(asm, th)?;
    let x = tape.solve(a, tape.constant(b.clone()), solver)?;
    let loss = x.sum_squares();
    let grads = tape.backward(loss)?;
    Ok((loss.scalar()?, grads.wrt(th).norm()))
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn run() -> std::result::Result<(), String> {
    let err = |e: sparsegrad::Error| e.to_string();
    let args: Args = clap::Parser::parse();
    let case_name = args.case;
    let n_req = args.n;
    let rhs = args.rhs;
    let repeat = args.repeat.max(1);
    let backend = args.backend;
    let json = args.json;
    let warm_only = args.warm_only;
    let ordering = match args.ordering.as_str() {
        "auto" => Ordering::Auto,
        "amd" => Ordering::Amd,
        "nd" => Ordering::NestedDissection,
        "rcm" => Ordering::ReverseCuthillMcKee,
        other => {
            return Err(format!(
                "unknown ordering '{other}' (auto | amd | nd | rcm)"
            ))
        }
    };
    let solver = match backend.as_str() {
        "fast" => Solver::cholesky().with_ordering(ordering),
        "reference" => Solver::cholesky().with_implementation(Implementation::Reference),
        "lu" => Solver::lu().with_ordering(ordering),
        other => return Err(format!("unknown backend '{other}' (fast | reference | lu)")),
    };
    let solver = match args.precision.as_str() {
        "double" => solver,
        "mixed" => solver.with_precision(Precision::Mixed),
        "single" => solver.with_precision(Precision::F32),
        "auto" => solver.with_precision(Precision::Auto),
        other => {
            return Err(format!(
                "unknown precision '{other}' (double | mixed | single | auto)"
            ))
        }
    };
    let c = case(&case_name, n_req, rhs, args.shuffle)?;
    let theta_at =
        |i: usize| -> Vec<f64> { c.theta0.iter().map(|t| t + 1e-3 * i as f64).collect() };
    let build = || c.build();
    let head = |regime: &str, t: f64| {
        format!(
            r#"{{"case":"{case_name}","n":{},"backend":"{backend}","regime":"{regime}","rhs":{rhs},"ms":{t:.4}"#,
            c.n
        )
    };

    // Memory first, while the heap holds only the inputs (edges, θ, B): the peak RSS of one cold
    // call above the RSS before it.
    let baseline_rss = status_mib("VmRSS:");
    value_and_gradient(&build().map_err(err)?, &c.theta0, &c.b, &solver).map_err(err)?;
    let cold_call_rss = peak_rss_mib() - baseline_rss;

    // Limit and breakdown on one warm structure.
    let asm = build().map_err(err)?;
    let (loss, grad_norm) = value_and_gradient(&asm, &c.theta0, &c.b, &solver).map_err(err)?; // warm-up: analysis cached
    let (mut t_values, mut t_numeric, mut t_forward, mut t_adjoint, mut t_limit) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 1..=repeat {
        let theta = theta_at(i);
        let t0 = Instant::now();
        let values = asm.values(&theta).map_err(err)?;
        t_values.push(ms(t0));
        let t1 = Instant::now();
        let f = solver.factorize(asm.structure(), &values).map_err(err)?;
        t_numeric.push(ms(t1));
        let mut x = c.b.clone();
        let t2 = Instant::now();
        f.solve_in_place(&mut x).map_err(err)?;
        t_forward.push(ms(t2));
        let mut lambda = &x * 2.0;
        let t3 = Instant::now();
        f.solve_transpose_in_place(&mut lambda).map_err(err)?;
        t_adjoint.push(ms(t3));
        t_limit.push(ms(t1));
    }
    let limit = median(t_limit);
    // Storage of A (values + CSC indices) and of its factor (values + symbolic indices).
    let word = std::mem::size_of::<usize>() as f64;
    let mib = |bytes: f64| bytes / f64::powi(1024.0, 2);
    let a_mib =
        mib(asm.structure().nnz() as f64 * (8.0 + word)
            + (asm.structure().ncols() + 1) as f64 * word);
    let factor_mib = {
        let values = asm.values(&c.theta0).map_err(err)?;
        let f = solver.factorize(asm.structure(), &values).map_err(err)?;
        f.stored_bytes().map_or(f64::NAN, |b| mib(b as f64))
    };
    let mut warm_times = vec![];
    for i in 1..=repeat {
        let theta = theta_at(i);
        let t0 = Instant::now();
        value_and_gradient(&asm, &theta, &c.b, &solver).map_err(err)?;
        warm_times.push(ms(t0));
    }
    let warm = median(warm_times);
    drop(asm);
    if warm_only {
        println!(
            "{case_name} n = {}: warm {warm:.3} ms, limit {limit:.3} ms ({:.2} × limit)",
            c.n,
            warm / limit
        );
        return Ok(());
    }

    // Cold: everything from the edge list on, every call.
    let (mut cold_times, mut build_times, mut first_factor) = (vec![], vec![], vec![]);
    for i in 1..=repeat {
        let theta = theta_at(i);
        let t0 = Instant::now();
        let fresh = build().map_err(err)?;
        build_times.push(ms(t0));
        value_and_gradient(&fresh, &theta, &c.b, &solver).map_err(err)?;
        cold_times.push(ms(t0));
        drop(fresh);
        // Symbolic + numeric on a structure that has not been analysed (timed separately).
        let again = build().map_err(err)?;
        let values = again.values(&theta).map_err(err)?;
        let t1 = Instant::now();
        solver.factorize(again.structure(), &values).map_err(err)?;
        first_factor.push(ms(t1));
    }
    let cold = median(cold_times);
    let (numeric, values, forward, adjoint) = (
        median(t_numeric),
        median(t_values),
        median(t_forward),
        median(t_adjoint),
    );
    let symbolic = (median(first_factor) - numeric).max(0.0);
    let tape_and_scatter = warm - values - numeric - forward - adjoint;
    let rss = peak_rss_mib();
    let memory = format!(
        r#","memory_mib":{{"a":{a_mib:.4},"factor":{factor_mib:.4},"cold_call_peak":{cold_call_rss:.1},"inputs":{baseline_rss:.1}}}"#
    );
    let extras = format!(
        r#","loss":{loss:.15e},"grad_norm":{grad_norm:.15e},"m":{},"repeat":{repeat}"#,
        c.m
    );
    if json {
        println!("{}{extras}}}", head("limit", limit));
        println!(
            "{}{extras},\"ratio_to_limit\":{:.4},\"breakdown_ms\":{{\"values\":{values:.4},\"numeric\":{numeric:.4},\"forward_solve\":{forward:.4},\"adjoint_solve\":{adjoint:.4},\"tape_and_scatter\":{tape_and_scatter:.4}}}}}",
            head("warm", warm),
            warm / limit
        );
        println!(
            "{}{extras},\"warm_speedup\":{:.4},\"breakdown_ms\":{{\"build\":{:.4},\"symbolic\":{symbolic:.4}}},\"peak_rss_mib\":{rss:.1}{memory}}}",
            head("cold", cold),
            cold / warm,
            median(build_times)
        );
    } else {
        println!("{case_name} n = {} ({} parameters), backend {backend}, {rhs} right-hand side(s), median of {repeat}", c.n, c.m);
        println!("  loss {loss:.12e}, |grad| {grad_norm:.12e}");
        if let Ok(report) = solver.analysis_report(build().map_err(err)?.structure()) {
            let gflops = report.prediction.flops / (numeric * 1e6);
            if args.gemm {
                let peak = gemm_peak_gflops(3072);
                println!(
                    "  numeric factorization {gflops:.2} GFLOP/s = {:.0}% of dense GEMM {peak:.2} GFLOP/s (faer matmul 3072², {} threads)",
                    100.0 * gflops / peak,
                    rayon::current_num_threads()
                );
            } else {
                println!("  numeric factorization {gflops:.2} GFLOP/s");
            }
            let candidates: Vec<String> = report
                .candidates
                .iter()
                .map(|(o, p)| format!("{o:?}: nnz(L) {:.3e}, {:.3e} flops", p.nnz_l, p.flops))
                .collect();
            println!(
                "  ordering {:?} (nnz(L) {:.3e}, {:.3e} flops){}",
                report.ordering,
                report.prediction.nnz_l,
                report.prediction.flops,
                if candidates.is_empty() {
                    String::new()
                } else {
                    format!("; candidates {}", candidates.join("; "))
                }
            );
        }
        println!(
            "  cold  {cold:>10.3} ms   (build {:.3} ms, symbolic ≈ {symbolic:.3} ms)",
            median(build_times)
        );
        println!(
            "  warm  {warm:>10.3} ms   ({:.2} × limit, cold/warm {:.2})",
            warm / limit,
            cold / warm
        );
        println!("  limit {limit:>10.3} ms   (numeric {numeric:.3}, forward {forward:.3}, adjoint {adjoint:.3})");
        println!("  warm breakdown: values {values:.3}, numeric {numeric:.3}, solves {:.3}, tape + gradient scatter {tape_and_scatter:.3} ms", forward + adjoint);
        println!("  peak RSS {rss:.1} MiB; one cold call: {cold_call_rss:.1} MiB above the {baseline_rss:.1} MiB before it; storage of A {a_mib:.1} MiB, of its factor {factor_mib:.1} MiB");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
