//! 1000 optimization iterations with one tape per iteration: resident memory must not grow.
//!
//! Runs plain gradient descent on the edge weights of a 64×64 grid (A = I + L(exp φ), 4 RHS) and
//! prints the resident set size (VmRSS) and its peak (VmHWM) at iterations 10, 100 and 1000; exits
//! with status 1 if RSS grew by more than 8 MiB between iterations 10 and 1000 (CI runs it).
//!
//! `cargo run --release --example memory_loop`

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{Solver, Tape};

fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> sparsegrad::Result<()> {
    let k = 64;
    let edges = grid_edges(k)?;
    let asm = laplacian_assembly(k * k, &edges, 1.0)?;
    let b = DMatrix::from_fn(k * k, 4, |i, c| (i as f64 * 0.37 + c as f64).sin());
    let target = DMatrix::from_fn(k * k, 4, |i, c| 0.5 * (i as f64 * 0.11 + c as f64).cos());
    let mut phi = DMatrix::zeros(edges.len(), 1);
    let mut samples = Vec::new();
    for it in 1..=1000 {
        let tape = Tape::new();
        let p = tape.var(phi.clone());
        let a = tape.assemble(&asm, p.exp())?;
        let x = tape.solve(a, tape.constant(b.clone()), &Solver::cholesky())?;
        let loss = (x - tape.constant(target.clone())).sum_squares();
        let g = tape.backward(loss)?;
        phi -= g.wrt(p) * 0.05;
        if [10, 100, 1000].contains(&it) {
            let (rss, peak) = (status_mib("VmRSS:"), status_mib("VmHWM:"));
            println!(
                "iteration {it:>4}: loss {:.6e}, RSS {rss:.1} MiB, peak {peak:.1} MiB",
                loss.scalar()?
            );
            samples.push(rss);
        }
    }
    let growth = samples[2] - samples[0];
    println!("RSS growth from iteration 10 to 1000: {growth:+.1} MiB");
    // One iteration's tape holds ~1 MiB; a leak of one tape per iteration would add ~1 GiB.
    if growth > 8.0 {
        eprintln!("memory grew by {growth:.1} MiB over 990 iterations");
        std::process::exit(1);
    }
    Ok(())
}
