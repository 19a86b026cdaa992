//! The seed benchmark's problem at scale: A(θ) = I + L(θ) for a cyclic chain of n nodes,
//! loss ‖A(θ)⁻¹ b‖², value and gradient with respect to θ — in O(n) memory.
//!
//! Prints the time of each phase, the peak resident memory (VmHWM) next to what one dense n×n
//! matrix would take, and a finite-difference spot check of a few gradient components.
//!
//! ```text
//! cargo run --release --example chain [-- --n 1048576 --check 3]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::problems::graph::{chain_edges, laplacian_assembly};
use sparsegrad::{check, Assembly, Result, Solver, Tape, Var};

/// Value and gradient for an n-node chain, with peak memory and a finite-difference spot check.
#[derive(clap::Parser)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 1 << 20)]
    n: usize,
    /// Number of finite-difference spot checks.
    #[arg(long, default_value_t = 3)]
    check: usize,
}

/// Peak resident set size in MiB (Linux), if available.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn loss<'t>(tape: &'t Tape, asm: &Assembly, theta: Var<'t>, b: &DMatrix<f64>) -> Result<Var<'t>> {
    let a = tape.assemble(asm, theta)?;
    let x = tape.solve(a, tape.constant(b.clone()), &Solver::cholesky())?;
    Ok(x.square().sum())
}

fn run() -> Result<bool> {
    let Args { n, check: checks } = clap::Parser::parse();
    let mut rng = StdRng::seed_from_u64(0);
    let theta0 = DMatrix::from_fn(n, 1, |_, _| rng.random_range(0.0..1.0));
    let b = DMatrix::from_fn(n, 1, |_, _| rng.random_range(0.0..1.0));

    let t = Instant::now();
    let asm = laplacian_assembly(n, &chain_edges(n)?, 1.0)?;
    let t_build = t.elapsed();

    for (label, pass) in [
        ("first (symbolic + numeric)", 0),
        ("second (numeric refactor)", 1),
    ] {
        let tape = Tape::new();
        let t0 = Instant::now();
        let theta = tape.var(theta0.clone());
        let l = loss(&tape, &asm, theta, &b)?;
        let t_forward = t0.elapsed();
        let grads = tape.backward(l)?;
        let t_total = t0.elapsed();
        let g = grads.wrt(theta);
        if pass == 0 {
            println!(
                "chain n = {n}: assembly built in {:.1} ms",
                t_build.as_secs_f64() * 1e3
            );
        }
        println!(
            "{label}: loss = {:.12e}, ‖∂L/∂θ‖ = {:.6e}; forward {:.1} ms, backward {:.1} ms, total {:.1} ms",
            l.scalar()?,
            g.norm(),
            t_forward.as_secs_f64() * 1e3,
            (t_total - t_forward).as_secs_f64() * 1e3,
            t_total.as_secs_f64() * 1e3
        );
    }
    println!("symbolic analyses: {}", asm.structure().symbolic_analyses());
    if let Some(rss) = peak_rss_mib() {
        let dense_gib = (n as f64).powi(2) * 8.0 / f64::powi(1024.0, 3);
        println!("peak RSS: {rss:.0} MiB (one dense n×n matrix would need {dense_gib:.0} GiB)");
    }
    if checks == 0 {
        return Ok(true);
    }
    // The loss is O(n) large (≈3e5 at n = 2²⁰), so rounding noise in each evaluation is too; a
    // larger step keeps the fourth-order stencil's rounding error below its truncation error.
    let options = check::Options {
        max_components: Some(checks),
        step: 1e-2,
        ..Default::default()
    };
    let report = check::gradient(|tape, theta| loss(tape, &asm, theta, &b), &theta0, &options)?;
    println!(
        "finite-difference check of {} components: worst relative error {:.2e} (component {})",
        report.checked, report.max_relative_error, report.worst_index
    );
    // Each loss evaluation is a sum of n terms; its rounding (~n·ε relative) bounds what a
    // finite difference can resolve, so the bar is 1e-5 here (the small-n tests use 1e-6 and 1e-10).
    Ok(report.max_relative_error < 1e-5)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: gradient check failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
