//! Time stepping with one shared factorization: 50 implicit-Euler steps of diffusion on a
//! k × k grid, (I + Δt L(θ)) u_{t+1} = u_t, with one diffusivity per edge, the loss
//! ½‖u_T − u_T^target‖² on the final state and its gradient with respect to all diffusivities.
//!
//! `Tape::factor` factors the step matrix once per evaluation and every step's solve — and every
//! adjoint solve of the backward pass — reuses it; the example times that against a solve node
//! per step (a factorization per step), counts the numeric factorizations of both, and checks
//! the gradient against central differences on a few diffusivities.
//!
//! ```text
//! cargo run --release --example implicit_diffusion [-- --k 200 --steps 50 --dt 0.5]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Result, Solver, Tape};

/// Implicit diffusion with a shared factorization.
#[derive(clap::Parser)]
struct Args {
    /// Grid side (k × k nodes).
    #[arg(long, default_value_t = 200)]
    k: usize,
    /// Implicit-Euler steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Time step (scales the diffusivities in the step matrix).
    #[arg(long, default_value_t = 0.5)]
    dt: f64,
}

/// (loss, gradient) of ½‖u_T − target‖² for diffusivities θ (Δt folded in), sharing one
/// factorization or refactoring per step.
fn evaluate(
    asm: &Assembly,
    theta: &[f64],
    u0: &DMatrix<f64>,
    target: Option<&DMatrix<f64>>,
    steps: usize,
    shared: bool,
) -> Result<(f64, Vec<f64>, DMatrix<f64>)> {
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(theta.len(), 1, theta));
    let a = tape.assemble(asm, th)?;
    let solver = Solver::cholesky();
    let factored = if shared {
        Some(tape.factor(a, &solver)?)
    } else {
        None
    };
    let mut u = tape.constant(u0);
    for _ in 0..steps {
        u = match &factored {
            Some(f) => f.solve(u)?,
            None => tape.solve(a, u, &solver)?,
        };
    }
    let final_state = u.value()?.clone();
    let diff = match target {
        Some(t) => u - tape.constant(t),
        None => u,
    };
    let loss = diff.sum_squares().scale(0.5);
    let g = tape.backward(loss)?.wrt(th).as_slice().to_vec();
    Ok((loss.scalar()?, g, final_state))
}

fn run() -> Result<bool> {
    let Args { k, steps, dt } = clap::Parser::parse();
    let n = k * k;
    let edges = grid_edges(k)?;
    let asm = laplacian_assembly(n, &edges, 1.0)?;
    // True diffusivities: a smooth field with a fast channel across the middle; the guess is
    // uniform. u₀: a hot square in one corner.
    let (true_theta, guess): (Vec<f64>, Vec<f64>) = edges
        .iter()
        .map(|&(i, _)| {
            let (r, c) = ((i / k) as f64 / k as f64, (i % k) as f64 / k as f64);
            let channel = if (r - 0.5).abs() < 0.1 { 4.0 } else { 1.0 };
            (dt * channel * (1.0 + 0.5 * (6.0 * c).sin()), dt)
        })
        .unzip();
    let u0 = DMatrix::from_fn(n, 1, |i, _| {
        if i / k < k / 4 && i % k < k / 4 {
            1.0
        } else {
            0.0
        }
    });
    println!(
        "implicit diffusion on a {k} × {k} grid: {} diffusivities, {steps} implicit-Euler steps, loss ½‖u_T − u_T(θ_true)‖²",
        edges.len()
    );
    let (_, _, target) = evaluate(&asm, &true_theta, &u0, None, steps, true)?;
    let s = asm.structure();
    let mut results = Vec::new();
    for shared in [true, false] {
        let mut times = Vec::new();
        let mut out = None;
        for _ in 0..3 {
            let before = s.numeric_factorizations();
            let start = Instant::now();
            let r = evaluate(&asm, &guess, &u0, Some(&target), steps, shared)?;
            times.push(start.elapsed().as_secs_f64());
            out = Some((r, s.numeric_factorizations() - before));
        }
        times.sort_by(f64::total_cmp);
        let ((loss, grad, _), factorizations) = out.expect("three runs");
        println!(
            "{:>28}: value + gradient {:.0} ms (median of 3), {factorizations} numeric factorizations, loss {loss:.6e}",
            if shared { "one factorization (factor)" } else { "one per step (solve)" },
            1e3 * times[1]
        );
        results.push((times[1], factorizations, loss, grad));
    }
    let (t_shared, f_shared, loss, grad) = &results[0];
    let (t_each, _, loss_each, grad_each) = &results[1];
    let g_max = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let same = grad
        .iter()
        .zip(grad_each)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max)
        / g_max;
    println!(
        "speedup {:.2}×; the two gradients differ by {same:.1e} (relative to max |g|), losses by {:.1e}",
        t_each / t_shared,
        (loss - loss_each).abs() / loss.abs()
    );
    // Central differences on the largest gradient entries and a few others.
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let mut worst: f64 = 0.0;
    let h = 1e-4;
    for &e in order.iter().take(3).chain([edges.len() / 2, 0].iter()) {
        let (mut p, mut m) = (guess.clone(), guess.clone());
        p[e] += h;
        m[e] -= h;
        let fp = evaluate(&asm, &p, &u0, Some(&target), steps, true)?.0;
        let fm = evaluate(&asm, &m, &u0, Some(&target), steps, true)?.0;
        let fd = (fp - fm) / (2.0 * h);
        worst = worst.max((fd - grad[e]).abs() / g_max);
    }
    println!("gradient vs central differences (5 diffusivities, h = {h}): {worst:.1e} relative to max |g|");
    let ok = *f_shared == 1 && worst <= 1e-7 && same <= 1e-10;
    if !ok {
        eprintln!("error: factorization count, gradient check or agreement failed");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
