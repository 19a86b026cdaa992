//! Parallel batches: one symbolic analysis, results identical to the serial run at 1 and 2 threads.

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{batch, Assembly, Solver, Tape, Var};

fn model<'t>(
    asm: &Assembly,
    b: &DMatrix<f64>,
    tape: &'t Tape,
    theta: Var<'t>,
) -> sparsegrad::Result<Var<'t>> {
    let a = tape.assemble(asm, theta)?;
    Ok(tape
        .solve(a, tape.constant(b.clone()), &Solver::cholesky())?
        .sum_squares())
}

#[test]
fn batch_of_64_grid_problems_is_bit_identical_across_thread_counts() {
    let k = 32;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(k * k, &edges, 1.0).unwrap();
    let b = DMatrix::from_fn(k * k, 2, |i, c| {
        1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos()
    });
    let points: Vec<DMatrix<f64>> = (0..64)
        .map(|d| {
            DMatrix::from_fn(edges.len(), 1, |e, _| {
                1.5 + 0.5 * ((e + 13 * d) as f64).sin()
            })
        })
        .collect();
    let bits = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| batch::value_and_gradient(&points, |t, x| model(&asm, &b, t, x)))
            .into_iter()
            .map(|r| {
                let (l, g) = r.unwrap();
                (
                    l.to_bits(),
                    g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let one = bits(1);
    assert_eq!(bits(2), one);
    assert_eq!(asm.structure().symbolic_analyses(), 1);
    assert_eq!(asm.structure().numeric_factorizations(), 128);
    // And equal to evaluating each point on its own.
    let tape = Tape::new();
    let x = tape.var(points[17].clone());
    let loss = model(&asm, &b, &tape, x).unwrap();
    assert_eq!(loss.scalar().unwrap().to_bits(), one[17].0);
}

/// `solve_batch` on 64 grid systems with k = 128 (16 384 unknowns each): one symbolic analysis,
/// bit-identical solutions and gradients at 1 and 2 threads, and each system's gradient equal to
/// the tape's.
#[test]
fn solve_batch_of_64_grid_128_systems() {
    let k = 128;
    let n = k * k;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(n, &edges, 1.0).unwrap();
    let s = asm.structure();
    let b = DMatrix::from_fn(n, 1, |i, _| 1.0 + 0.5 * (i as f64).cos());
    let values: Vec<Vec<f64>> = (0..64)
        .map(|d| {
            let theta: Vec<f64> = (0..edges.len())
                .map(|e| 1.5 + 0.5 * ((e + 13 * d) as f64).sin())
                .collect();
            asm.values(&theta).unwrap()
        })
        .collect();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let batch =
                    batch::solve_batch(s, &values, std::slice::from_ref(&b), &Solver::cholesky())
                        .unwrap();
                // L_i = ‖X_i‖² ⇒ Ḡ_i = 2 X_i.
                let upstream: Vec<DMatrix<f64>> =
                    batch.solutions().iter().map(|x| x * 2.0).collect();
                let grads = batch.gradients(&upstream).unwrap();
                (batch.solutions().to_vec(), grads)
            })
    };
    let (x1, g1) = run(1);
    let (x2, g2) = run(2);
    assert_eq!(x1, x2);
    assert_eq!(g1, g2);
    assert_eq!(s.symbolic_analyses(), 1);
    assert_eq!(s.numeric_factorizations(), 128);
    // System 40 against the tape.
    let tape = Tape::new();
    let a = tape.sparse_var(s, &values[40]).unwrap();
    let bv = tape.var(b.clone());
    let x = tape.solve(a, bv, &Solver::cholesky()).unwrap();
    let g = tape.backward(x.sum_squares()).unwrap();
    assert_eq!(x.value().unwrap(), x1[40]);
    assert_eq!(g.wrt(a).as_slice(), g1[40].0.as_slice());
    assert_eq!(g.wrt(bv), &g1[40].1);
    // Errors: wrong count of right-hand sides.
    let two = [b.clone(), b.clone()];
    assert!(batch::solve_batch(s, &values, &two, &Solver::cholesky()).is_err());
}
