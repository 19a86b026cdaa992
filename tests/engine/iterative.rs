//! Krylov solvers through the solve node: gradients against the direct solvers and finite
//! differences, and `NotConverged` when the iteration limit is too small.

use nalgebra::DMatrix;
use sparsegrad::{check, Error, Factorizer, Iterative, Solver, Symmetry, Tape};

use crate::common::{general, rel_inf, spd, Problem};

fn gradient(p: &Problem, f: &dyn Factorizer) -> DMatrix<f64> {
    let asm = p.assembly();
    let tape = Tape::new();
    let x = tape.var(p.x0());
    let loss = p.loss(&asm, f, &tape, x).unwrap();
    tape.backward(loss).unwrap().wrt(x).clone()
}

#[test]
fn cg_gradients_match_the_direct_solver() {
    let p = spd(60, 3, Symmetry::Lower, 71);
    let err = rel_inf(
        &gradient(&p, &Iterative::cg(1e-12, 1000)),
        &gradient(&p, &Solver::cholesky()),
    );
    assert!(err < 1e-9, "{err:e}");
    // Looser tolerance, proportionally looser gradient.
    let loose = rel_inf(
        &gradient(&p, &Iterative::cg(1e-6, 1000)),
        &gradient(&p, &Solver::cholesky()),
    );
    assert!(loose < 1e-3 && loose > err, "{loose:e}");
}

#[test]
fn bicgstab_gradients_match_lu_on_a_nonsymmetric_matrix() {
    let p = general(60, 2, 72);
    let err = rel_inf(
        &gradient(&p, &Iterative::bicgstab(1e-12, 1000)),
        &gradient(&p, &Solver::lu()),
    );
    assert!(err < 1e-9, "{err:e}");
    let asm = p.assembly();
    let solver = Iterative::bicgstab(1e-13, 1000);
    let report = check::gradient(
        |t, x| p.loss(&asm, &solver, t, x),
        &p.x0(),
        &Default::default(),
    )
    .unwrap();
    assert!(report.max_relative_error < 1e-6, "{report:?}");
}

#[test]
fn too_few_iterations_is_not_converged_with_the_residual() {
    for (p, solver) in [
        (spd(80, 1, Symmetry::Lower, 73), Iterative::cg(1e-12, 3)),
        (general(80, 1, 74), Iterative::bicgstab(1e-12, 2)),
    ] {
        let e = p.solve_at_theta(&solver).unwrap_err();
        match e {
            Error::NotConverged {
                iterations,
                relative_residual,
            } => {
                assert!(
                    iterations <= 3 && relative_residual > 1e-12 && relative_residual < 1.0,
                    "{e}"
                );
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
    }
}

#[test]
fn cg_refuses_a_general_structure() {
    let p = general(10, 1, 75);
    let e = p.solve_at_theta(&Iterative::cg(1e-10, 100)).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
}
