//! Krylov solvers through the solve node: every method × preconditioner against the direct
//! solvers and finite differences, the tolerance → gradient-error relation, `NotConverged`,
//! residuals on the tape, warm starts and thread-count independence.

use nalgebra::DMatrix;
use sparsegrad::{
    check, Error, Factorizer, Iterative, Krylov, Preconditioner, Solver, Symmetry, Tape,
};

use crate::common::{general, rel_inf, spd, Problem};

fn gradient(p: &Problem, f: &dyn Factorizer) -> DMatrix<f64> {
    let asm = p.assembly();
    let tape = Tape::new();
    let x = tape.var(p.x0());
    let loss = p.loss(&asm, f, &tape, x).unwrap();
    tape.backward(loss).unwrap().wrt(x).clone()
}

fn fd_error(p: &Problem, solver: &dyn Factorizer) -> f64 {
    let asm = p.assembly();
    check::gradient(
        |t, x| p.loss(&asm, solver, t, x),
        p.x0(),
        &Default::default(),
    )
    .unwrap()
    .max_relative_error
}

const ALL: [Preconditioner; 4] = [
    Preconditioner::None,
    Preconditioner::Jacobi,
    Preconditioner::Ic0,
    Preconditioner::Ilu0,
];

fn methods() -> [Iterative; 4] {
    [
        Iterative::cg(1e-12, 2000),
        Iterative::minres(1e-12, 2000),
        Iterative::bicgstab(1e-12, 2000),
        Iterative::gmres(20, 1e-12, 4000),
    ]
}

/// SPD matrix: every method × every preconditioner it accepts (CG/MINRES take the symmetric
/// ones) matches the Cholesky gradient and central differences.
#[test]
fn every_method_and_preconditioner_on_an_spd_matrix() {
    let p = spd(40, 2, Symmetry::Lower, 71);
    let direct = gradient(&p, &Solver::cholesky());
    let mut combinations = 0;
    for method in methods() {
        for pre in ALL {
            let solver = method.clone().with_preconditioner(pre);
            let symmetric_only = matches!(method.method, Krylov::Cg | Krylov::Minres);
            if symmetric_only && pre == Preconditioner::Ilu0 {
                continue;
            }
            let err = rel_inf(&gradient(&p, &solver), &direct);
            assert!(err < 1e-9, "{:?} + {pre:?}: {err:e}", method.method);
            let fd = fd_error(&p, &solver);
            assert!(fd < 1e-6, "{:?} + {pre:?}: FD {fd:e}", method.method);
            combinations += 1;
        }
    }
    assert_eq!(combinations, 14);
}

/// Non-symmetric matrix: BiCGSTAB and GMRES with each general preconditioner match LU (true
/// transpose solves in the adjoint) and central differences.
#[test]
fn general_methods_on_a_nonsymmetric_matrix() {
    let p = general(40, 2, 72);
    let direct = gradient(&p, &Solver::lu());
    for method in [
        Iterative::bicgstab(1e-12, 2000),
        Iterative::gmres(15, 1e-12, 4000),
    ] {
        for pre in [
            Preconditioner::None,
            Preconditioner::Jacobi,
            Preconditioner::Ilu0,
        ] {
            let solver = method.clone().with_preconditioner(pre);
            let err = rel_inf(&gradient(&p, &solver), &direct);
            assert!(err < 1e-9, "{:?} + {pre:?}: {err:e}", method.method);
            let fd = fd_error(&p, &solver);
            assert!(fd < 1e-6, "{:?} + {pre:?}: FD {fd:e}", method.method);
        }
    }
}

/// MINRES on a symmetric indefinite matrix matches LDLᵀ (CG is not applicable there).
#[test]
fn minres_on_a_symmetric_indefinite_matrix() {
    let mut p = spd(40, 2, Symmetry::Lower, 76);
    for (i, _, v) in p.constants.iter_mut() {
        *v = if *i % 3 == 0 { -9.0 } else { 4.0 };
    }
    let dense = p.dense(&p.theta);
    let eigen = dense.symmetric_eigenvalues();
    assert!(eigen.min() < 0.0 && eigen.max() > 0.0, "not indefinite");
    let direct = gradient(&p, &Solver::ldlt());
    for pre in [Preconditioner::None, Preconditioner::Jacobi] {
        let solver = Iterative::minres(1e-12, 4000).with_preconditioner(pre);
        let err = rel_inf(&gradient(&p, &solver), &direct);
        assert!(err < 1e-8, "{pre:?}: {err:e}");
    }
    let (fd_minres, fd_ldlt) = (
        fd_error(&p, &Iterative::minres(1e-13, 4000)),
        fd_error(&p, &Solver::ldlt()),
    );
    let smallest = eigen.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
    println!("FD: minres {fd_minres:e}, ldlt {fd_ldlt:e}, min |λ| {smallest}");
    assert!(fd_minres < 1e-6);
}

/// The gradient error follows the solver tolerance: measured here, ‖∇_iter − ∇_direct‖∞ /
/// ‖∇_direct‖∞ ≤ 10 × tolerance for CG + Jacobi and GMRES + ILU(0) from 1e-4 to 1e-12.
#[test]
fn gradient_error_follows_the_tolerance() {
    let p = spd(60, 2, Symmetry::Lower, 77);
    let direct = gradient(&p, &Solver::cholesky());
    let mut previous = f64::INFINITY;
    for tol in [1e-4, 1e-6, 1e-8, 1e-10, 1e-12] {
        for solver in [
            Iterative::cg(tol, 5000),
            Iterative::gmres(30, tol, 5000).with_preconditioner(Preconditioner::Ilu0),
        ] {
            let err = rel_inf(&gradient(&p, &solver), &direct);
            println!("{:?} tol {tol:e}: gradient error {err:.2e}", solver.method);
            assert!(
                err <= 10.0 * tol,
                "{:?} tol {tol:e}: {err:e}",
                solver.method
            );
        }
        let err = rel_inf(&gradient(&p, &Iterative::cg(tol, 5000)), &direct);
        assert!(err < previous || err < 1e-13, "{tol:e}");
        previous = err;
    }
}

#[test]
fn too_few_iterations_is_not_converged_with_the_residual() {
    let spd_p = spd(80, 1, Symmetry::Lower, 73);
    let gen_p = general(80, 1, 74);
    for (p, solver) in [
        (&spd_p, Iterative::cg(1e-14, 3)),
        (&spd_p, Iterative::minres(1e-14, 3)),
        (&gen_p, Iterative::bicgstab(1e-14, 2)),
        (&gen_p, Iterative::gmres(2, 1e-14, 3)),
        (
            &gen_p,
            Iterative::gmres(10, 1e-14, 3).with_preconditioner(Preconditioner::Ilu0),
        ),
    ] {
        let e = p.solve_at_theta(&solver).unwrap_err();
        match e {
            Error::NotConverged {
                iterations,
                relative_residual,
            } => {
                assert!(
                    iterations <= 3 && relative_residual > 1e-14 && relative_residual < 1.0,
                    "{:?}: {e}",
                    solver.method
                );
            }
            other => panic!("{:?}: expected NotConverged, got {other:?}", solver.method),
        }
    }
}

/// Forward and adjoint residuals are readable on the tape after backward; a direct solver
/// reports none.
#[test]
fn residuals_are_exposed_on_the_tape() {
    let p = spd(50, 3, Symmetry::Lower, 78);
    let asm = p.assembly();
    let tol = 1e-9;
    let solver = Iterative::cg(tol, 1000).with_preconditioner(Preconditioner::Ic0);
    let tape = Tape::new();
    let theta = tape.var(DMatrix::from_vec(p.m, 1, p.theta.clone()));
    let a = tape.assemble(&asm, theta).unwrap();
    let x = tape.solve(a, tape.constant(p.b.clone()), &solver).unwrap();
    let before = tape.solve_info(x).unwrap();
    assert!(before.adjoint.is_none());
    let forward = before.forward.unwrap();
    assert!(forward.iterations >= 1 && forward.relative_residual <= tol);
    // The reported residual is the true one.
    let xv = x.value().unwrap();
    let r = p.dense(&p.theta) * &xv - &p.b;
    let true_rel = (0..p.k)
        .map(|c| r.column(c).norm() / p.b.column(c).norm())
        .fold(0.0f64, f64::max);
    assert!((true_rel - forward.relative_residual).abs() <= 1e-3 * true_rel + 1e-16);
    tape.backward(x.sum_squares()).unwrap();
    let adjoint = tape.solve_info(x).unwrap().adjoint.unwrap();
    assert!(adjoint.iterations >= 1 && adjoint.relative_residual <= tol);
    // Direct: no iterations, a condition estimate; not a solve: an error.
    let y = tape
        .solve(a, tape.constant(p.b.clone()), &Solver::cholesky())
        .unwrap();
    let info = tape.solve_info(y).unwrap();
    assert_eq!((info.forward, info.adjoint), (None, None));
    let rcond = info.reciprocal_condition.unwrap();
    assert!(rcond > 0.0 && rcond <= 1.0, "{rcond}");
    assert!(matches!(
        tape.solve_info(theta),
        Err(Error::InvalidArgument { .. })
    ));
}

/// Warm starts cut the iterations for a nearby system and keep the gradient exact.
#[test]
fn warm_start_reuses_the_previous_solutions() {
    let p = spd(200, 2, Symmetry::Lower, 79);
    let asm = p.assembly();
    let solver = Iterative::cg(1e-11, 2000).with_warm_start();
    let run = |theta: &[f64]| {
        let tape = Tape::new();
        let t = tape.var(DMatrix::from_vec(p.m, 1, theta.to_vec()));
        let a = tape.assemble(&asm, t).unwrap();
        let x = tape.solve(a, tape.constant(p.b.clone()), &solver).unwrap();
        let g = tape.backward(x.sum_squares()).unwrap().wrt(t).clone();
        (tape.solve_info(x).unwrap(), g)
    };
    let (cold, _) = run(&p.theta);
    let nearby: Vec<f64> = p.theta.iter().map(|t| t * (1.0 + 1e-6)).collect();
    let (warm, g) = run(&nearby);
    let (c, w) = (cold.forward.unwrap(), warm.forward.unwrap());
    let (ca, wa) = (cold.adjoint.unwrap(), warm.adjoint.unwrap());
    println!("cold {c:?} {ca:?}, warm {w:?} {wa:?}");
    assert!(w.iterations * 2 <= c.iterations, "{w:?} vs {c:?}");
    assert!(wa.iterations * 2 <= ca.iterations, "{wa:?} vs {ca:?}");
    // Same gradient as a direct solve at the nearby point.
    let tape = Tape::new();
    let t = tape.var(DMatrix::from_vec(p.m, 1, nearby.clone()));
    let a = tape.assemble(&asm, t).unwrap();
    let x = tape
        .solve(a, tape.constant(p.b.clone()), &Solver::cholesky())
        .unwrap();
    let direct = tape.backward(x.sum_squares()).unwrap().wrt(t).clone();
    assert!(rel_inf(&g, &direct) < 1e-8);
}

/// Columns are solved in parallel, each sequentially: identical bits at 1 and 2 threads.
#[test]
fn multi_rhs_is_identical_across_thread_counts() {
    let p = spd(300, 8, Symmetry::Lower, 80);
    let solve = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                p.solve_at_theta(&Iterative::gmres(20, 1e-10, 2000))
                    .unwrap()
            })
    };
    let (one, two) = (solve(1), solve(2));
    assert_eq!(one.as_slice(), two.as_slice());
}

#[test]
fn unsupported_combinations_are_refused() {
    let g = general(10, 1, 75);
    let s = spd(10, 1, Symmetry::Lower, 75);
    for (p, solver) in [
        (&g, Iterative::cg(1e-10, 100)),
        (&g, Iterative::minres(1e-10, 100)),
        (
            &g,
            Iterative::bicgstab(1e-10, 100).with_preconditioner(Preconditioner::Ic0),
        ),
        (
            &s,
            Iterative::cg(1e-10, 100).with_preconditioner(Preconditioner::Ilu0),
        ),
    ] {
        let e = p.solve_at_theta(&solver).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    }
}
