//! Value and gradient of ‖A(θ)⁻¹B‖²_F (A = I + L(θ), the seed benchmark's problem) on the CPU
//! backend and on the GPU backend in f64, f32 and mixed precision, for the 2D grid (k = 256, 512,
//! 1024) and the chain (n = 2^16 … 2^22) with 1 and 64 right-hand sides, all in one run. Warm
//! regime: one Structure (one symbolic analysis), a new θ each call; median of `--repeat` calls
//! after one warm-up. Prints a table and, with `--json`, one JSON object per measurement.
//!
//! ```text
//! cargo run --release --features cuda --example gpu_benchmark -- [--quick] [--repeat R] [--json]
//! ```

use std::time::Instant;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{chain_edges, grid_edges, laplacian_assembly};
use sparsegrad::{Device, Factorizer, Iterative, Precision, Solver, Tape};

/// A graph's edge list.
type Edges = Vec<(usize, usize)>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Loss and gradient wrt θ through the tape.
fn evaluate(
    asm: &sparsegrad::Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> sparsegrad::Result<(f64, Vec<f64>)> {
    let tape = Tape::new();
    let p = tape.var_vector(nalgebra::DVector::from_column_slice(theta));
    let a = tape.assemble(asm, p)?;
    let x = tape.solve(a, tape.constant(b.clone()), solver)?;
    let loss = x.sum_squares();
    let g = tape.backward(loss)?;
    Ok((loss.value()?[(0, 0)], g.wrt(p).as_slice().to_vec()))
}

/// GPU against CPU backend on grids and chains.
#[derive(clap::Parser)]
struct Args {
    /// One JSON line per case.
    #[arg(long)]
    json: bool,
    /// Only the smallest grid and chain.
    #[arg(long)]
    quick: bool,
    /// Timed repetitions per case.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn main() {
    let Args {
        json,
        quick,
        repeat,
    } = clap::Parser::parse();
    let gpu = match sparsegrad::backend::device_info(0) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("GPU: {gpu}; CPU: {} threads", rayon::current_num_threads());
    let mut cases: Vec<(String, usize, Edges)> = Vec::new();
    let grids: &[usize] = if quick { &[256] } else { &[256, 512, 1024] };
    let chains: &[u32] = if quick { &[16] } else { &[16, 18, 20, 22] };
    for &k in grids {
        cases.push((
            format!("grid {k}²"),
            k * k,
            grid_edges(k).expect("grid size"),
        ));
    }
    for &p in chains {
        cases.push((format!("chain 2^{p}"), 1 << p, chain_edges(1 << p).unwrap()));
    }
    let modes: Vec<(&str, Box<dyn Factorizer>)> = vec![
        ("cpu", Box::new(Solver::cholesky())),
        ("gpu-f64", Box::new(Solver::cholesky().on(Device::cuda()))),
        (
            "gpu-f32",
            Box::new(Solver::cholesky().on(Device::Cuda {
                ordinal: 0,
                precision: Precision::F32,
            })),
        ),
        (
            "gpu-mixed",
            Box::new(Solver::cholesky().on(Device::Cuda {
                ordinal: 0,
                precision: Precision::Mixed,
            })),
        ),
        (
            "gpu-cg",
            Box::new(Iterative::cg(1e-10, 20_000).on(Device::cuda())),
        ),
    ];
    println!(
        "{:<12} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10}   (ms; rel. gradient error vs cpu)",
        "case", "rhs", "cpu", "gpu-f64", "gpu-f32", "gpu-mixed", "gpu-cg"
    );
    for (name, n, edges) in &cases {
        let asm = laplacian_assembly(*n, edges, 1.0).expect("valid graph");
        for rhs in [1usize, 64] {
            let b = DMatrix::from_fn(*n, rhs, |i, c| 1.0 + 0.5 * ((i + 7 * c) as f64).cos());
            let theta0: Vec<f64> = (0..edges.len())
                .map(|e| 1.5 + 0.5 * (e as f64).sin())
                .collect();
            let mut row = format!("{name:<12} {rhs:>4}");
            let mut reference: Option<Vec<f64>> = None;
            for (mode, solver) in &modes {
                let mut times = Vec::new();
                let mut last = None;
                let mut failed = None;
                for i in 0..=repeat {
                    let theta: Vec<f64> = theta0.iter().map(|t| t + 1e-3 * i as f64).collect();
                    let start = Instant::now();
                    match evaluate(&asm, &theta, &b, solver.as_ref()) {
                        Ok(r) => {
                            if i > 0 {
                                times.push(start.elapsed().as_secs_f64() * 1e3);
                            }
                            last = Some(r);
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    row += &format!(" {:>10}", "error");
                    eprintln!("{name} rhs {rhs} {mode}: {e}");
                    continue;
                }
                let (loss, grad) = last.expect("at least one call");
                let ms = median(times);
                let error = match &reference {
                    None => {
                        reference = Some(grad);
                        0.0
                    }
                    Some(r) => {
                        let d: f64 = grad.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
                        let s: f64 = r.iter().map(|v| v * v).sum();
                        (d / s).sqrt()
                    }
                };
                row += &format!(" {ms:>10.2}");
                if json {
                    println!(
                        "{{\"case\":\"{name}\",\"n\":{n},\"rhs\":{rhs},\"mode\":\"{mode}\",\"ms\":{ms:.3},\"loss\":{loss:e},\"grad_rel_error\":{error:e}}}"
                    );
                }
            }
            println!("{row}");
        }
    }
}
