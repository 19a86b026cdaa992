//! MUMPS over MPI (feature `mpi`) against faer on the same ranks: value and gradient of
//! ‖A(θ)⁻¹B‖²_F through the tape, for an SPD 3D grid (A = I + L(θ), k³ 7-point) and a
//! non-symmetric 3D convection–diffusion system (general storage, LU, true Aᵀ adjoint), then a
//! singular system that must fail with an error on every rank. With two or more ranks, hostile
//! input too: both triangles stored, and ranks that disagree (values, right-hand sides) or refuse
//! their input on one rank only — each an error on every rank, never a hang.
//!
//! ```text
//! cargo build --release --features mpi --example distributed
//! mpirun --allow-run-as-root --oversubscribe -np 2 target/release/examples/distributed [--k 40] [--k-general 20]
//! ```
//! Every rank prints its own lines (SPMD: every rank runs the same program; MUMPS distributes the
//! factor). `factor memory` is MUMPS's INFO(16) for this rank (MB).

use std::process::ExitCode;
use std::time::Instant;

use mpi::topology::Communicator;
use nalgebra::DMatrix;
use sparsegrad::backend::mumps::Mumps;
use sparsegrad::problems::graph::{grid3_edges, laplacian_assembly};
use sparsegrad::{Assembly, Error, Factorizer, Result, Solver, Structure, Symmetry, Tape};

/// SPD and non-symmetric grids.
#[derive(clap::Parser)]
struct Args {
    /// Side of the SPD k³ grid.
    #[arg(long, default_value_t = 40)]
    k: usize,
    /// Side of the non-symmetric k³ grid.
    #[arg(long, default_value_t = 20)]
    k_general: usize,
}

/// (loss, ∂loss/∂θ, seconds) with `solver`.
fn value_and_gradient(
    asm: &Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> Result<(f64, Vec<f64>, f64)> {
    let t = Instant::now();
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(theta.len(), 1, theta));
    let a = tape.assemble(asm, th)?;
    let x = tape.solve(a, tape.constant(b.clone()), solver)?;
    let loss = x.sum_squares();
    let g = tape.backward(loss)?;
    Ok((
        loss.scalar()?,
        g.wrt(th).as_slice().to_vec(),
        t.elapsed().as_secs_f64(),
    ))
}

/// max(|ΔL| / |L|, max_e |Δg_e| / max_e |g_e|).
fn max_relative_difference(a: &(f64, Vec<f64>, f64), b: &(f64, Vec<f64>, f64)) -> f64 {
    let loss = (a.0 - b.0).abs() / b.0.abs();
    let scale = b.1.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let grad =
        a.1.iter()
            .zip(&b.1)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale;
    loss.max(grad)
}

/// I + L(θ) + upwind convection along x (velocity 0.5), general storage.
fn convection_diffusion(k: usize) -> Result<(Assembly, usize)> {
    let n = k * k * k;
    let edges = grid3_edges(k)?;
    let mut builder = Assembly::builder(n, n, edges.len()).symmetry(Symmetry::General);
    for (e, &(u, v)) in edges.iter().enumerate() {
        builder.push_entry(u, u, e, 1.0);
        builder.push_entry(v, v, e, 1.0);
        builder.push_entry(u, v, e, -1.0);
        builder.push_entry(v, u, e, -1.0);
        if v == u + 1 {
            // x-edge: flow from u to v.
            builder.push_constant(v, u, -0.5);
            builder.push_constant(v, v, 0.5);
        }
    }
    for i in 0..n {
        builder.push_constant(i, i, 1.0);
    }
    Ok((builder.build()?, edges.len()))
}

fn run(rank: i32, size: i32, mumps: &Mumps, args: &Args) -> Result<bool> {
    let mut ok = true;
    let rhs =
        |n: usize| DMatrix::from_fn(n, 2, |i, c| 1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos());
    let theta_for =
        |m: usize| -> Vec<f64> { (0..m).map(|e| 1.5 + 0.5 * (e as f64).sin()).collect() };

    // SPD 3D grid.
    let k = args.k;
    let n = k * k * k;
    let edges = grid3_edges(k)?;
    let asm = laplacian_assembly(n, &edges, 1.0)?;
    let theta = theta_for(edges.len());
    let b = rhs(n);
    let with_mumps = value_and_gradient(&asm, &theta, &b, mumps)?;
    let analysed = asm.structure().symbolic_analyses();
    let again = value_and_gradient(&asm, &theta, &b, mumps)?; // analysis kept on the structure
    ok &= asm.structure().symbolic_analyses() == analysed;
    let memory = mumps.last_memory().expect("MUMPS factorized");
    let with_faer = value_and_gradient(&asm, &theta, &b, &Solver::cholesky())?;
    let diff = max_relative_difference(&with_mumps, &with_faer);
    ok &= diff <= 1e-10;
    println!(
        "rank {rank}/{size} SPD grid {k}³ (n = {n}, 2 RHS): loss {:.12e}; MUMPS {:.3} s (again, analysis kept: {:.3} s), faer {:.3} s; max relative difference vs faer: {diff:.3e}",
        with_mumps.0, with_mumps.2, again.2, with_faer.2
    );
    println!(
        "rank {rank}/{size} factor memory: {:.1} MB of factor entries on this rank (INFO(9), {:.1} MB on all ranks), {} MB allocated by MUMPS on this rank (INFO(16); largest rank {} MB, INFOG(21))",
        memory.factor_bytes() as f64 / 1e6,
        memory.factor_entries_total as f64 * 8.0 / 1e6,
        memory.allocated_mb,
        memory.allocated_mb_max
    );

    // Non-symmetric convection–diffusion.
    let kg = args.k_general;
    let (general, m) = convection_diffusion(kg)?;
    let theta = theta_for(m);
    let b = rhs(kg * kg * kg);
    let with_mumps = value_and_gradient(&general, &theta, &b, mumps)?;
    let with_faer = value_and_gradient(&general, &theta, &b, &Solver::lu())?;
    let diff = max_relative_difference(&with_mumps, &with_faer);
    ok &= diff <= 1e-10;
    println!(
        "rank {rank}/{size} non-symmetric grid {kg}³ (n = {}, LU): loss {:.12e}; MUMPS {:.3} s, faer {:.3} s; max relative difference vs faer: {diff:.3e}",
        kg * kg * kg,
        with_mumps.0,
        with_mumps.2,
        with_faer.2
    );

    // Singular: the general system with its first row and column zeroed.
    let mut values = general.values(&theta)?;
    let s = general.structure();
    let cols = s.col_idx();
    for (k, (&i, &j)) in s.row_idx().iter().zip(&cols).enumerate() {
        if i == 0 || j == 0 {
            values[k] = 0.0;
        }
    }
    match mumps.factorize(s, &values) {
        Err(e @ Error::Singular { .. }) => {
            println!("rank {rank}/{size} singular system: error on rank {rank}: {e}")
        }
        Err(e) => {
            ok = false;
            println!("rank {rank}/{size} singular system: unexpected error: {e}");
        }
        Ok(_) => {
            ok = false;
            println!(
                "rank {rank}/{size} singular system: factorization succeeded (expected an error)"
            );
        }
    }
    if size > 1 {
        ok &= hostile(rank, size, mumps)?;
    }
    Ok(ok)
}

/// X of A X = B (A = `values` on `s`) through the tape with `solver`.
fn solve_with(
    s: &std::sync::Arc<Structure>,
    values: &[f64],
    b: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> Result<DMatrix<f64>> {
    let tape = Tape::new();
    let a = tape.sparse_var(s, values)?;
    let x = tape.solve(a, tape.constant(b.clone()), solver)?;
    x.value()
}

/// Issue 27: both triangles stored (SYM = 1 takes one), and ranks that disagree or refuse their
/// input on one rank only — each must be an error on every rank, never a hang or the host's X.
fn hostile(rank: i32, size: i32, mumps: &Mumps) -> Result<bool> {
    let mut ok = true;
    let k = 6;
    let n = k * k * k;
    let edges = grid3_edges(k)?;
    let asm = laplacian_assembly(n, &edges, 1.0)?;
    let theta: Vec<f64> = (0..edges.len())
        .map(|e| 1.0 + 0.3 * (e as f64).cos())
        .collect();
    let lower = asm.values(&theta)?;
    let s = asm.structure();
    // Both triangles: every lower entry and its mirror.
    let cols = s.col_idx();
    let mut pairs = Vec::new();
    let mut vals = Vec::new();
    for ((&i, &j), &v) in s.row_idx().iter().zip(&cols).zip(&lower) {
        pairs.push((i, j));
        vals.push(v);
        if i != j {
            pairs.push((j, i));
            vals.push(v);
        }
    }
    let (full, slots) = Structure::from_pairs(n, n, &pairs, Symmetry::Full)?;
    let mut values = vec![0.0; full.nnz()];
    for (slot, v) in slots.into_iter().zip(vals) {
        values[slot] += v;
    }
    let b = DMatrix::from_fn(n, 2, |i, c| 1.0 + (i as f64 * 0.1 + c as f64).sin());
    let x_mumps = solve_with(&full, &values, &b, mumps)?;
    let x_faer = solve_with(&full, &values, &b, &Solver::cholesky())?;
    let diff = (&x_mumps - &x_faer).amax() / x_faer.amax();
    ok &= diff <= 1e-10;
    println!(
        "rank {rank}/{size} both triangles stored (Symmetry::Full, n = {n}): max relative difference vs faer: {diff:.3e}"
    );

    let mut nan_values = lower.clone();
    if rank == 1 {
        nan_values[3] = f64::NAN;
    }
    let mut nan_b = b.clone();
    if rank == 1 {
        nan_b[(5, 1)] = f64::NAN;
    }
    let cases: [(&str, Result<DMatrix<f64>>); 5] = [
        (
            "different values on each rank",
            solve_with(
                s,
                &lower
                    .iter()
                    .map(|v| v * (1.0 + f64::from(rank)))
                    .collect::<Vec<_>>(),
                &b,
                mumps,
            ),
        ),
        (
            "a different number of right-hand sides on each rank",
            solve_with(
                s,
                &lower,
                &b.columns(0, 1 + (rank as usize % 2)).into_owned(),
                mumps,
            ),
        ),
        // Through the Factorizer: the tape refuses a NaN value before any solver sees it.
        (
            "a NaN in the matrix on rank 1 only",
            mumps.factorize(s, &nan_values).map(|_| b.clone()),
        ),
        (
            "a NaN in the right-hand side on rank 1 only",
            solve_with(s, &lower, &nan_b, mumps),
        ),
        (
            "right-hand sides with different rows on each rank",
            solve_with(
                s,
                &lower,
                &DMatrix::from_element(n + rank as usize % 2, 1, 1.0),
                mumps,
            ),
        ),
    ];
    for (what, result) in cases {
        match result {
            Err(e @ Error::Distributed { .. }) => {
                println!("rank {rank}/{size} hostile input, {what}: error on rank {rank}: {e}")
            }
            Err(e) => {
                ok = false;
                println!("rank {rank}/{size} hostile input, {what}: unexpected error: {e}");
            }
            Ok(_) => {
                ok = false;
                println!("rank {rank}/{size} hostile input, {what}: solved (expected an error)");
            }
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let Some(universe) = mpi::initialize() else {
        eprintln!("error: MPI could not be initialized");
        return ExitCode::from(2);
    };
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mumps = Mumps::new(&world);
    match run(rank, size, &mumps, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("rank {rank}: a check failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rank {rank}: error: {e}");
            ExitCode::from(2)
        }
    }
}
