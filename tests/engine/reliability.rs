//! Edge cases and determinism (part of issue 9).

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{Error, Solver, Structure, Symmetry, Tape};

#[test]
fn one_by_one_system() {
    let s = Structure::new(1, 1, vec![0, 1], vec![0], Symmetry::Lower).unwrap();
    let tape = Tape::new();
    let a = tape.sparse_var(&s, &[4.0]).unwrap();
    let b = tape.var(DMatrix::from_element(1, 1, 2.0));
    let x = tape.solve(a, b, &Solver::cholesky()).unwrap();
    assert_eq!(x.scalar().unwrap(), 0.5);
    let g = tape.backward(x.sum_squares()).unwrap();
    // L = (b/a)²: ∂L/∂a = −2b²/a³ = −0.125, ∂L/∂b = 2b/a² = 0.25.
    assert_eq!(g.wrt(a)[(0, 0)], -0.125);
    assert_eq!(g.wrt(b)[(0, 0)], 0.25);
}

#[test]
fn zero_right_hand_side_gives_zero_solution_and_gradient() {
    let asm = laplacian_assembly(16, &grid_edges(4), 1.0).unwrap();
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_element(24, 1, 1.0));
    let a = tape.assemble(&asm, th).unwrap();
    let x = tape
        .solve(a, tape.constant(DMatrix::zeros(16, 3)), &Solver::cholesky())
        .unwrap();
    assert_eq!(x.value().unwrap().amax(), 0.0);
    let g = tape.backward(x.sum_squares()).unwrap();
    assert_eq!(g.wrt(th).amax(), 0.0);
}

#[test]
fn empty_matrix_and_zero_columns_are_errors_not_panics() {
    let s = Structure::new(0, 0, vec![0], vec![], Symmetry::Lower).unwrap();
    let tape = Tape::new();
    let a = tape.sparse_var(&s, &[]).unwrap();
    let e = tape
        .solve(a, tape.constant(DMatrix::zeros(0, 0)), &Solver::cholesky())
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
}

/// The same inputs give bit-identical values and gradients, evaluation after evaluation.
#[test]
fn evaluations_are_bit_identical() {
    let asm = laplacian_assembly(400, &grid_edges(20), 1.0).unwrap();
    let run = || {
        let tape = Tape::new();
        let th = tape.var(DMatrix::from_fn(760, 1, |e, _| {
            1.5 + 0.5 * (e as f64).sin()
        }));
        let a = tape.assemble(&asm, th).unwrap();
        let b = DMatrix::from_fn(400, 4, |i, c| (i as f64 + 7.0 * c as f64).cos());
        let x = tape
            .solve(a, tape.constant(b), &Solver::cholesky())
            .unwrap();
        let loss = x.sum_squares();
        (
            loss.scalar().unwrap().to_bits(),
            tape.backward(loss)
                .unwrap()
                .wrt(th)
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
        )
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}
