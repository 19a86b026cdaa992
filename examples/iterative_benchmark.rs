//! Value and gradient of ‖A(θ)⁻¹b‖² (A = I + L(θ) on a k×k grid, the seed benchmark's problem)
//! with the direct Cholesky solver against preconditioned CG, k = 256 … 1024, in one run: warm
//! regime (one Structure, new θ each call), median of `--repeat` calls after one warm-up. CG runs
//! to a relative tolerance of 1e-10; the table reports its iterations (forward/adjoint, from
//! `Tape::solve_info`) and the gradient's relative error against Cholesky. A last column
//! warm-starts CG+IC(0) from the previous call's solutions.
//!
//! ```text
//! cargo run --release --example iterative_benchmark -- [--sizes 256,512,1024] [--repeat 3]
//!     [--shift S]
//! ```
//! `--shift S` uses A = S·I + L(θ) (default 1, the seed's well-conditioned problem; 1e-3 makes
//! κ(A) ≈ 1e4·k²/256 and CG needs many more iterations).

use std::time::Instant;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Factorizer, Iterative, Preconditioner, Solver, Tape};

/// Loss, gradient and (forward, adjoint) iterations.
fn evaluate(
    asm: &Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> (f64, Vec<f64>, (usize, usize)) {
    let tape = Tape::new();
    let p = tape.var_vector(nalgebra::DVector::from_column_slice(theta));
    let a = tape.assemble(asm, p).expect("assemble");
    let x = tape
        .solve(a, tape.constant(b.clone()), solver)
        .expect("solve");
    let loss = x.sum_squares();
    let g = tape.backward(loss).expect("backward");
    let info = tape.solve_info(x).expect("solve info");
    let its = (
        info.forward.map_or(0, |c| c.iterations),
        info.adjoint.map_or(0, |c| c.iterations),
    );
    (
        loss.value().expect("value")[(0, 0)],
        g.wrt(p).as_slice().to_vec(),
        its,
    )
}

/// Krylov solvers against the direct solver on k × k grids.
#[derive(clap::Parser)]
struct Args {
    /// Grid sides k (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    sizes: Vec<usize>,
    /// Timed repetitions per case.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A = shift·I + L(θ).
    #[arg(long, default_value_t = 1.0)]
    shift: f64,
}

fn main() {
    let Args {
        sizes,
        repeat,
        shift,
    } = clap::Parser::parse();
    let tol = 1e-10;
    let solvers: Vec<(&str, Box<dyn Factorizer>)> = vec![
        ("cholesky", Box::new(Solver::cholesky())),
        (
            "cg+ic0",
            Box::new(Iterative::cg(tol, 50_000).with_preconditioner(Preconditioner::Ic0)),
        ),
        ("cg+jacobi", Box::new(Iterative::cg(tol, 50_000))),
        (
            "cg+ic0 warm",
            Box::new(
                Iterative::cg(tol, 50_000)
                    .with_preconditioner(Preconditioner::Ic0)
                    .with_warm_start(),
            ),
        ),
    ];
    println!("grid A = {shift}·I + L(θ), value + gradient, warm structure, median of {repeat}; CG relative tolerance {tol:e}");
    println!(
        "{:>6} {:>9} {:>14} {:>12} {:>14} {:>12}",
        "k", "n", "solver", "ms", "iterations", "grad error"
    );
    for k in sizes {
        let n = k * k;
        let edges = grid_edges(k).expect("grid size");
        let asm = laplacian_assembly(n, &edges, shift).expect("valid grid");
        let b = DMatrix::from_fn(n, 1, |i, _| 1.0 + 0.5 * (i as f64).cos());
        let theta0: Vec<f64> = (0..edges.len())
            .map(|e| 1.5 + 0.5 * (e as f64).sin())
            .collect();
        let mut reference: Option<Vec<f64>> = None;
        for (name, solver) in &solvers {
            let mut times = Vec::new();
            let mut last = None;
            for i in 0..=repeat {
                let theta: Vec<f64> = theta0.iter().map(|t| t + 1e-4 * i as f64).collect();
                let start = Instant::now();
                let r = evaluate(&asm, &theta, &b, solver.as_ref());
                if i > 0 {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
                last = Some(r);
            }
            times.sort_by(f64::total_cmp);
            let (_, grad, its) = last.expect("ran");
            let error = match &reference {
                None => {
                    reference = Some(grad);
                    0.0
                }
                Some(r) => {
                    let d: f64 = grad.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
                    (d / r.iter().map(|v| v * v).sum::<f64>()).sqrt()
                }
            };
            println!(
                "{k:>6} {n:>9} {name:>14} {:>12.1} {:>14} {error:>12.2e}",
                times[times.len() / 2],
                format!("{}/{}", its.0, its.1)
            );
        }
    }
}
