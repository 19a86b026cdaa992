//! Gradients of the solve node against central differences and a dense reference, for every
//! backend × right-hand-side count × storage, plus the non-symmetric adjoint trap.

use nalgebra::DMatrix;
use sparsegrad::{check, Implementation, Solver, Symmetry, Tape};

use crate::common::{general, rel_inf, spd, Problem};

/// Central differences ≤ 1e-6 and dense reference ≤ 1e-10 (both relative).
fn assert_gradient(p: &Problem, solver: Solver) {
    let asm = p.assembly();
    let report = check::gradient(
        |t, x| p.loss(&asm, &solver, t, x),
        p.x0(),
        &check::Options::default(),
    )
    .unwrap();
    assert!(
        report.max_relative_error <= 1e-6,
        "finite differences: {report:?}"
    );
    assert_eq!(report.checked, p.m + p.n * p.k);
    let dense = p.dense_gradient();
    let err = rel_inf(&report.gradient, &dense);
    assert!(err <= 1e-10, "dense reference: relative error {err:e}");
}

#[test]
fn fast_cholesky_full_storage_one_rhs() {
    assert_gradient(&spd(40, 1, Symmetry::Full, 1), Solver::cholesky());
}
#[test]
fn fast_cholesky_full_storage_four_rhs() {
    assert_gradient(&spd(40, 4, Symmetry::Full, 2), Solver::cholesky());
}
#[test]
fn fast_cholesky_lower_storage_one_rhs() {
    assert_gradient(&spd(60, 1, Symmetry::Lower, 3), Solver::cholesky());
}
#[test]
fn fast_cholesky_lower_storage_four_rhs() {
    assert_gradient(&spd(60, 4, Symmetry::Lower, 4), Solver::cholesky());
}
#[test]
fn reference_cholesky_full_storage_one_rhs() {
    assert_gradient(
        &spd(40, 1, Symmetry::Full, 5),
        Solver::cholesky().with_implementation(Implementation::Reference),
    );
}
#[test]
fn reference_cholesky_full_storage_four_rhs() {
    assert_gradient(
        &spd(40, 4, Symmetry::Full, 6),
        Solver::cholesky().with_implementation(Implementation::Reference),
    );
}
#[test]
fn reference_cholesky_lower_storage_one_rhs() {
    assert_gradient(
        &spd(60, 1, Symmetry::Lower, 7),
        Solver::cholesky().with_implementation(Implementation::Reference),
    );
}
#[test]
fn reference_cholesky_lower_storage_four_rhs() {
    assert_gradient(
        &spd(60, 4, Symmetry::Lower, 8),
        Solver::cholesky().with_implementation(Implementation::Reference),
    );
}
#[test]
fn lu_nonsymmetric_one_rhs() {
    assert_gradient(&general(50, 1, 9), Solver::lu());
}
#[test]
fn lu_nonsymmetric_four_rhs() {
    assert_gradient(&general(50, 4, 10), Solver::lu());
}
#[test]
fn lu_on_symmetric_full_storage() {
    assert_gradient(&spd(40, 4, Symmetry::Full, 11), Solver::lu());
}
#[test]
fn lu_on_symmetric_lower_storage() {
    assert_gradient(&spd(40, 4, Symmetry::Lower, 12), Solver::lu());
}
#[test]
fn ldlt_on_lower_storage() {
    assert_gradient(&spd(40, 4, Symmetry::Lower, 13), Solver::ldlt());
}

/// Full and one-triangle storage of the same SPD system give the same gradient with respect to
/// the shared parameters.
#[test]
fn full_and_lower_storage_agree() {
    let (full, lower) = (
        spd(30, 2, Symmetry::Full, 21),
        spd(30, 2, Symmetry::Lower, 21),
    );
    assert_eq!(full.theta, lower.theta);
    let grad = |p: &Problem| {
        let asm = p.assembly();
        let tape = Tape::new();
        let x = tape.var(p.x0());
        let loss = p.loss(&asm, &Solver::cholesky(), &tape, x).unwrap();
        tape.backward(loss).unwrap().wrt(x).clone()
    };
    let (gf, gl) = (grad(&full), grad(&lower));
    assert!(rel_inf(&gf, &gl) < 1e-12, "{:e}", rel_inf(&gf, &gl));
}

/// The fast and the reference Cholesky backends produce the same solution and gradients.
#[test]
fn fast_and_reference_backends_agree() {
    let p = spd(60, 3, Symmetry::Lower, 22);
    let asm = p.assembly();
    let run = |solver: Solver| {
        let tape = Tape::new();
        let x = tape.var(p.x0());
        let loss = p.loss(&asm, &solver, &tape, x).unwrap();
        (
            loss.scalar().unwrap(),
            tape.backward(loss).unwrap().wrt(x).clone(),
        )
    };
    let (lf, gf) = run(Solver::cholesky());
    let (lr, gr) = run(Solver::cholesky().with_implementation(Implementation::Reference));
    assert!((lf - lr).abs() <= 1e-12 * lf.abs());
    assert!(rel_inf(&gf, &gr) < 1e-11, "{:e}", rel_inf(&gf, &gr));
}

/// The solution itself matches a dense solve.
#[test]
fn solution_matches_dense_solve() {
    for (p, solver) in [
        (spd(50, 3, Symmetry::Lower, 23), Solver::cholesky()),
        (general(50, 3, 24), Solver::lu()),
    ] {
        let x = p.solve_at_theta(&solver).unwrap();
        let dense = p.dense(&p.theta).lu().solve(&p.b).unwrap();
        assert!(rel_inf(&x, &dense) < 1e-12);
    }
}

/// For a non-symmetric A the adjoint must solve with Aᵀ. This test checks that the tape gradient
/// matches finite differences *and* that the classic bug (solving with A in the backward pass)
/// would be caught: the gradient computed that way is far from the finite differences.
#[test]
fn nonsymmetric_adjoint_uses_the_transpose() {
    let p = general(30, 2, 31);
    let asm = p.assembly();
    let solver = Solver::lu();
    let report = check::gradient(
        |t, x| p.loss(&asm, &solver, t, x),
        p.x0(),
        &check::Options::default(),
    )
    .unwrap();
    assert!(report.max_relative_error <= 1e-6, "{report:?}");

    // The buggy adjoint: Λ' = A⁻¹ Ḡ instead of A⁻ᵀ Ḡ.
    let a = p.dense(&p.theta);
    let x = a.clone().lu().solve(&p.b).unwrap();
    let lambda_wrong = a.clone().lu().solve(&(&p.w + &x)).unwrap();
    let b_bar_wrong = DMatrix::from_column_slice(p.n * p.k, 1, lambda_wrong.as_slice());
    let b_bar_fd = report.gradient.rows(p.m, p.n * p.k).into_owned();
    let err = rel_inf(&b_bar_wrong, &b_bar_fd);
    assert!(
        err > 1e-2,
        "the test matrix is too close to symmetric to catch a transposed adjoint ({err:e})"
    );
}

/// A user-supplied factorizer (dense LU through nalgebra) gets the same gradients as the built-in
/// sparse LU: the solve node's adjoint only needs `solve_transpose_in_place`.
#[test]
fn user_supplied_factorizer_gets_exact_gradients() {
    use sparsegrad::{Factor, Factorization, Factorizer, Structure};
    use std::sync::Arc;
    type Lu = nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>;
    struct DenseFactor(Lu, Lu, usize);
    impl Factorization for DenseFactor {
        fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> sparsegrad::Result<()> {
            self.0.solve_mut(rhs);
            Ok(())
        }
        fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> sparsegrad::Result<()> {
            self.1.solve_mut(rhs);
            Ok(())
        }
        fn dim(&self) -> usize {
            self.2
        }
        fn describe(&self) -> String {
            "dense LU".into()
        }
    }
    struct DenseLu;
    impl Factorizer for DenseLu {
        fn factorize(&self, s: &Arc<Structure>, values: &[f64]) -> sparsegrad::Result<Arc<Factor>> {
            let mut a = DMatrix::zeros(s.nrows(), s.ncols());
            for j in 0..s.ncols() {
                for k in s.col_ptr()[j]..s.col_ptr()[j + 1] {
                    a[(s.row_idx()[k], j)] += values[k];
                }
            }
            Ok(Arc::new(DenseFactor(
                a.clone().lu(),
                a.transpose().lu(),
                s.nrows(),
            )))
        }
    }
    let p = general(30, 3, 61);
    let asm = p.assembly();
    let grad = |f: &dyn Factorizer| {
        let tape = Tape::new();
        let x = tape.var(p.x0());
        let theta = x.gather(&(0..p.m).collect::<Vec<_>>());
        let a = tape.assemble(&asm, theta).unwrap();
        let sol = tape.solve(a, tape.constant(p.b.clone()), f).unwrap();
        let loss = sol.dot(tape.constant(p.w.clone())) + sol.sum_squares();
        tape.backward(loss).unwrap().wrt(x).clone()
    };
    let (user, builtin) = (grad(&DenseLu), grad(&Solver::lu()));
    assert!(
        rel_inf(&user, &builtin) < 1e-12,
        "{:e}",
        rel_inf(&user, &builtin)
    );
    assert!(builtin.rows(0, p.m).amax() > 1e-3);
}
