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
    let asm = laplacian_assembly(16, &grid_edges(4).unwrap(), 1.0).unwrap();
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
    let asm = laplacian_assembly(400, &grid_edges(20).unwrap(), 1.0).unwrap();
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

/// Large evaluations reuse pooled buffers and workspaces (≥ 1 MiB) from earlier ones; results
/// stay bit-identical to an evaluation on fresh memory, for every direct method.
#[test]
fn pooled_buffers_do_not_change_results() {
    use sparsegrad::problems::graph::chain_edges;
    let n = 1 << 17;
    let asm = laplacian_assembly(n, &chain_edges(n).unwrap(), 1.0).unwrap();
    let theta = DMatrix::from_fn(n, 1, |e, _| 1.5 + 0.5 * (e as f64).sin());
    let b = DMatrix::from_fn(n, 2, |i, c| 1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos());
    for solver in [Solver::cholesky(), Solver::ldlt(), Solver::lu()] {
        let run = || {
            let tape = Tape::new();
            let th = tape.var(theta.clone());
            let a = tape.assemble(&asm, th).unwrap();
            let x = tape.solve(a, tape.constant(b.clone()), &solver).unwrap();
            let loss = x.sum_squares();
            let grads = tape.backward(loss).unwrap();
            let bits = |m: &DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (loss.scalar().unwrap().to_bits(), bits(grads.wrt(th)))
        };
        sparsegrad::release_pooled_memory();
        let fresh = run();
        for _ in 0..3 {
            assert_eq!(run(), fresh, "{solver:?}");
        }
    }
}

/// A nearly singular SPD matrix (path Laplacian + 1e-12·I, κ₁ ≈ 4e12): the solve succeeds with a
/// small backward error, and `condition_estimate` reports the conditioning, within a factor of
/// 3 of the dense κ₁ (and never above it by more than rounding).
#[test]
fn nearly_singular_spd_reports_its_condition() {
    let n = 40;
    let mut b = sparsegrad::Assembly::builder(n, n, 0).symmetry(Symmetry::Lower);
    for i in 0..n {
        b.push_constant(i, i, 1e-12);
    }
    for i in 0..n - 1 {
        b.push_constant(i, i, 1.0);
        b.push_constant(i + 1, i + 1, 1.0);
        b.push_constant(i + 1, i, -1.0);
    }
    let asm = b.build().unwrap();
    let s = asm.structure();
    let values = asm.values(&[]).unwrap();
    let mut dense = DMatrix::zeros(n, n);
    for ((&i, j), &v) in s.row_idx().iter().zip(s.col_idx()).zip(&values) {
        dense[(i, j)] = v;
        dense[(j, i)] = v;
    }
    let inverse = dense.clone().try_inverse().unwrap();
    let col_norm = |m: &DMatrix<f64>| {
        (0..n)
            .map(|j| m.column(j).iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max)
    };
    let kappa = col_norm(&dense) * col_norm(&inverse);
    assert!(kappa > 1e12, "{kappa:e}");
    // Backward-stable solve: residual check at 1e-12 passes despite κ₁ ≈ 4e12.
    let solver = Solver::cholesky().with_residual_check(Some(1e-12));
    let f = solver.factorize(s, &values).unwrap();
    let rhs = DMatrix::from_fn(n, 2, |i, c| ((i + 3 * c) as f64).sin());
    let mut x = rhs.clone();
    f.solve_in_place(&mut x).unwrap();
    solver.check_residual(s, &values, &x, &rhs).unwrap();
    let estimate = sparsegrad::solve::condition_estimate(s, &values, f.as_ref()).unwrap();
    println!("κ₁ = {kappa:e}, estimate {estimate:e}");
    assert!(
        estimate >= kappa / 3.0 && estimate <= kappa * 1.001,
        "{estimate:e} vs {kappa:e}"
    );
    // A well-conditioned matrix gets a small estimate.
    let cols = s.col_idx();
    let shifted: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            if s.row_idx()[k] == cols[k] {
                v + 1.0
            } else {
                *v
            }
        })
        .collect();
    let g = solver.factorize(s, &shifted).unwrap();
    let small = sparsegrad::solve::condition_estimate(s, &shifted, g.as_ref()).unwrap();
    assert!(small < 10.0, "{small}");
}
