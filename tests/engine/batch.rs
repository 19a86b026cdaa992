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
    let edges = grid_edges(k);
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
