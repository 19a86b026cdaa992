//! The seed project's minimal example, in sparsegrad.
//!
//! A = I + L(w): the identity plus the weighted graph Laplacian of random edges (seeded),
//! L(w) = ½‖A(w)⁻¹ b‖². The seed uses w = 1 and b = 1, but b = 1 lies in the null space of every
//! Laplacian (A b = b), so its gradient is exactly zero and checks nothing; here w and b are
//! random (seeded) instead. Prints the loss, ‖∂L/∂w‖ and the largest difference to the same
//! gradient computed densely with nalgebra, and fails if that difference exceeds 1e-10 relative.
//!
//! ```text
//! cargo run --release --example minimal [-- --n 10 --seed 0]
//! ```

use std::process::ExitCode;

use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::{Assembly, Solver, Symmetry, Tape};

/// The seed project's example, checked against a dense gradient.
#[derive(clap::Parser)]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    n: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let Args { n, seed } = clap::Parser::parse();
    let mut rng = StdRng::seed_from_u64(seed);
    // E: unique random pairs (i, j) ∈ [0, n)², as the seed's torch.unique(randint(0, n, (6n, 2))).
    let mut edges: Vec<(usize, usize)> = (0..6 * n)
        .map(|_| (rng.random_range(0..n), rng.random_range(0..n)))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let w0: Vec<f64> = (0..edges.len())
        .map(|_| rng.random_range(0.5..1.5))
        .collect();
    let b: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();

    // A = I + Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ, both triangles stored.
    let mut builder = Assembly::builder(n, n, edges.len()).symmetry(Symmetry::Full);
    for i in 0..n {
        builder.push_constant(i, i, 1.0);
    }
    for (e, &(i, j)) in edges.iter().enumerate() {
        builder.push_entry(i, j, e, -1.0);
        builder.push_entry(j, i, e, -1.0);
        builder.push_entry(i, i, e, 1.0);
        builder.push_entry(j, j, e, 1.0);
    }
    let assembly = match builder.build() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let run = || -> sparsegrad::Result<(f64, DVector<f64>)> {
        let tape = Tape::new();
        let w = tape.var(DMatrix::from_column_slice(edges.len(), 1, &w0));
        let a = tape.assemble(&assembly, w)?;
        let x = tape.solve(
            a,
            tape.constant(DMatrix::from_column_slice(n, 1, &b)),
            &Solver::cholesky(),
        )?;
        let loss = x.square().sum() * 0.5;
        let grads = tape.backward(loss)?;
        Ok((loss.scalar()?, grads.wrt_vector(w)))
    };
    let (loss, grad) = match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Dense reference: x = A⁻¹ b, λ = A⁻ᵀ x, ∂L/∂w_e = −(x_i − x_j)(λ_i − λ_j).
    let mut a = DMatrix::<f64>::identity(n, n);
    for (&(i, j), &w) in edges.iter().zip(&w0) {
        a[(i, j)] -= w;
        a[(j, i)] -= w;
        a[(i, i)] += w;
        a[(j, j)] += w;
    }
    let x = a
        .clone()
        .lu()
        .solve(&DVector::from_column_slice(&b))
        .expect("A is SPD");
    let lambda = a.transpose().lu().solve(&x).expect("A is SPD");
    let dense = DVector::from_iterator(
        edges.len(),
        edges
            .iter()
            .map(|&(i, j)| -(x[i] - x[j]) * (lambda[i] - lambda[j])),
    );
    let dense_loss = 0.5 * x.norm_squared();

    let diff = (&grad - &dense).amax();
    let rel = diff / dense.amax().max(f64::MIN_POSITIVE);
    println!("n = {n}, edges = {}", edges.len());
    println!("L = ½‖A⁻¹b‖²      = {loss:.15e} (dense {dense_loss:.15e})");
    println!("‖∂L/∂w‖           = {:.15e}", grad.norm());
    println!("max |sparse − dense| = {diff:.3e} ({rel:.3e} relative)");
    if rel <= 1e-10 && (loss - dense_loss).abs() <= 1e-12 * dense_loss.abs() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the sparse gradient disagrees with the dense one");
        ExitCode::FAILURE
    }
}
