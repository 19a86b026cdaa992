//! `Tape::factor` (issue 35): many solves with one factorization — counted — with the same
//! values and gradients as refactoring per solve, transposed solves against dense references,
//! and errors.

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Error, Solver, Tape};

use super::common::spd;
use sparsegrad::Symmetry;

/// (loss, gradient) of ½‖u_T‖² after `steps` implicit-Euler steps (I + L(θ)) u_{t+1} = u_t,
/// with one shared factorization or a solve (and a factorization) per step.
fn diffusion(
    asm: &Assembly,
    theta: &DMatrix<f64>,
    steps: usize,
    shared: bool,
) -> (f64, DMatrix<f64>) {
    let tape = Tape::new();
    let th = tape.var(theta);
    let a = tape.assemble(asm, th).unwrap();
    let n = asm.structure().nrows();
    let mut u = tape.constant(DMatrix::from_fn(n, 2, |i, c| ((i * 7 + c * 3) % 5) as f64));
    let solver = Solver::cholesky();
    let f = shared.then(|| tape.factor(a, &solver).unwrap());
    for _ in 0..steps {
        u = match &f {
            Some(f) => f.solve(u).unwrap(),
            None => tape.solve(a, u, &solver).unwrap(),
        };
    }
    let loss = u.sum_squares().scale(0.5);
    let g = tape.backward(loss).unwrap().wrt(th).clone();
    (loss.scalar().unwrap(), g)
}

#[test]
fn factored_solves_share_one_factorization_and_match_refactoring() {
    let asm = laplacian_assembly(36, &grid_edges(6).unwrap(), 1.0).unwrap();
    let theta = DMatrix::from_fn(asm.n_params(), 1, |e, _| 0.5 + 0.1 * (e % 7) as f64);
    let s = asm.structure();
    let before = s.numeric_factorizations();
    let (v_shared, g_shared) = diffusion(&asm, &theta, 12, true);
    assert_eq!(
        s.numeric_factorizations() - before,
        1,
        "one factorization for 12 steps"
    );
    let (v_each, g_each) = diffusion(&asm, &theta, 12, false);
    assert_eq!(s.numeric_factorizations() - before, 13);
    assert!((v_shared - v_each).abs() <= 1e-13 * v_each.abs());
    assert!((&g_shared - &g_each).amax() <= 1e-12 * g_each.amax());
    // Central differences on two parameters (the loss is far larger than these gradient
    // entries, so a step of 1e-3 keeps rounding, ε·|loss|/h, below the 1e-7 asked).
    let h = 1e-3;
    for e in [0, 31] {
        let (mut p, mut m) = (theta.clone(), theta.clone());
        p[e] += h;
        m[e] -= h;
        let fd = (diffusion(&asm, &p, 12, true).0 - diffusion(&asm, &m, 12, true).0) / (2.0 * h);
        assert!(
            (fd - g_shared[e]).abs() <= 1e-7 * g_shared.amax(),
            "θ[{e}]: {fd} vs {} (max {})",
            g_shared[e],
            g_shared.amax()
        );
    }
}

/// Y = A⁻ᵀB for a general (LU) matrix against the dense transpose solve, and its gradient
/// against the dense formula Ā = −YΛᵀ, Λ = A⁻¹Ḡ; forward mode and backward use no
/// factorization.
#[test]
fn solve_transpose_matches_dense() {
    let p = spd(14, 2, Symmetry::General, 3);
    let asm = p.assembly();
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(p.m, 1, &p.theta));
    let a = tape.assemble(&asm, th).unwrap();
    let b = tape.var(p.b.clone());
    let f = tape.factor(a, &Solver::lu()).unwrap();
    let y = f.solve_transpose(b).unwrap();
    let dense = DMatrix::from(
        &asm.structure()
            .to_csc_full(a.value().unwrap().as_slice())
            .unwrap(),
    );
    let expected = dense.transpose().lu().solve(&p.b).unwrap();
    assert!((y.value().unwrap() - &expected).amax() <= 1e-12 * expected.amax());
    let w = tape.constant(p.w.clone());
    let loss = (y * w).sum();
    let count = asm.structure().numeric_factorizations();
    let g = tape.backward(loss).unwrap();
    let _ = tape
        .jvp(&[(b, DMatrix::from_element(p.n, p.k, 1.0))], &[y])
        .unwrap();
    assert_eq!(asm.structure().numeric_factorizations(), count);
    let lambda = dense.clone().lu().solve(&p.w).unwrap();
    assert!((g.wrt(b) - &lambda).amax() <= 1e-12 * lambda.amax());
}

#[test]
fn factor_errors_are_clear() {
    let tape = Tape::new();
    let dense = tape.var(DMatrix::identity(3, 3));
    assert!(matches!(
        tape.factor(dense, &Solver::cholesky()).unwrap_err(),
        Error::Unsupported { .. }
    ));
    let asm = laplacian_assembly(4, &[(1, 0), (2, 1), (3, 2)], 1.0).unwrap();
    let th = tape.var(DMatrix::from_element(3, 1, 1.0));
    let a = tape.assemble(&asm, th).unwrap();
    let f = tape.factor(a, &Solver::cholesky()).unwrap();
    let e = f.solve(tape.constant(DMatrix::zeros(5, 1))).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    let other = Tape::new();
    let e = f.solve(other.constant(DMatrix::zeros(4, 1))).unwrap_err();
    assert!(matches!(e, Error::ForeignVar { .. }), "{e:?}");
    // An indefinite matrix does not factor by Cholesky: the solver's check, at `factor`.
    let neg = tape
        .assemble(&asm, tape.var(DMatrix::from_element(3, 1, -5.0)))
        .unwrap();
    assert!(matches!(
        tape.factor(neg, &Solver::cholesky()).unwrap_err(),
        Error::NotPositiveDefinite { .. }
    ));
}
