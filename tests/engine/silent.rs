//! Issue 27: no silent wrong number. Each test is a class that returned a wrong or non-finite
//! result (or aborted) before: numerically singular matrices accepted, a non-finite solution from
//! a solver without a residual check, Krylov tolerances that make x = 0 "converge", and LU nested
//! dissection on a matrix with a dense row. Badly scaled but well-posed systems must still pass.

use std::sync::Arc;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{chain_edges, laplacian_assembly};
use sparsegrad::{Error, Factorizer, Iterative, Ordering, Solver, Structure, Symmetry, Tape};

/// A structure and values from dense entries (zeros dropped): all of them (`General`) or the
/// lower triangle (`Lower`).
fn stored(a: &DMatrix<f64>, symmetry: Symmetry) -> (Arc<Structure>, Vec<f64>) {
    let n = a.nrows();
    let mut pairs = Vec::new();
    let mut vals = Vec::new();
    for j in 0..n {
        for i in 0..n {
            if a[(i, j)] != 0.0 && (symmetry == Symmetry::General || i >= j) {
                pairs.push((i, j));
                vals.push(a[(i, j)]);
            }
        }
    }
    let (s, slots) = Structure::from_pairs(n, n, &pairs, symmetry).unwrap();
    let mut values = vec![0.0; s.nnz()];
    for (k, v) in slots.into_iter().zip(vals) {
        values[k] += v;
    }
    (s, values)
}

fn general(a: &DMatrix<f64>) -> (Arc<Structure>, Vec<f64>) {
    stored(a, Symmetry::General)
}

fn solve(
    s: &Arc<Structure>,
    values: &[f64],
    b: &[f64],
    solver: &dyn Factorizer,
) -> sparsegrad::Result<DMatrix<f64>> {
    let tape = Tape::new();
    let a = tape.sparse_var(s, values)?;
    let x = tape.solve(
        a,
        tape.constant(DMatrix::from_column_slice(b.len(), 1, b)),
        solver,
    )?;
    x.value()
}

/// Rank 2 (row 3 = row 1 + row 2): b outside the range returned x ≈ 4.5e15 from LU with its
/// residual check on; b inside the range returned one of infinitely many solutions.
#[test]
fn numerically_singular_lu_is_an_error_for_any_right_hand_side() {
    let a = DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.0, 7.0, 9.0]);
    let (s, values) = general(&a);
    for b in [[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]] {
        for solver in [
            Solver::lu(),
            Solver::lu().with_residual_check(None),
            Solver::auto(),
            Solver::lu().with_ordering(Ordering::NestedDissection),
        ] {
            match solve(&s, &values, &b, &solver) {
                Err(Error::Singular { reason, .. }) => {
                    assert!(reason.contains("working precision"), "{reason}")
                }
                other => panic!("{solver:?}, b = {b:?}: expected Singular, got {other:?}"),
            }
        }
    }
}

/// A singular positive semidefinite matrix (a ring Laplacian without anchor, weighted so its pivots
/// are not exact zeros): Cholesky and LDLᵀ must not return a solution.
#[test]
fn singular_semidefinite_matrices_are_refused_by_cholesky_and_ldlt() {
    let n = 64;
    let asm = laplacian_assembly(n, &chain_edges(n).unwrap(), 0.0).unwrap();
    let theta: Vec<f64> = (0..n)
        .map(|e| 0.1 + 0.7 * ((e * 37) % 11) as f64 / 11.0)
        .collect();
    let values = asm.values(&theta).unwrap();
    let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).sin()).collect();
    for solver in [Solver::cholesky(), Solver::ldlt(), Solver::auto()] {
        match solve(asm.structure(), &values, &b, &solver) {
            Err(
                Error::Singular { .. }
                | Error::NotPositiveDefinite { .. }
                | Error::UnstablePivot { .. },
            ) => {}
            other => panic!("{solver:?}: expected an error, got {other:?}"),
        }
    }
}

/// diag(1e-300, 1) with b = (1e300, 1): x₀ overflows. Cholesky has no residual check, and
/// returned [inf, 1]; every solver must now say Singular (the solve node checks X is finite).
#[test]
fn a_non_finite_solution_is_an_error_for_every_solver() {
    let s = Structure::new(2, 2, vec![0, 1, 2], vec![0, 1], Symmetry::Lower).unwrap();
    for solver in [
        Solver::cholesky(),
        Solver::ldlt(),
        Solver::lu(),
        Solver::auto(),
    ] {
        match solve(&s, &[1e-300, 1.0], &[1e300, 1.0], &solver) {
            Err(Error::Singular { reason, .. }) => {
                assert!(reason.contains("non-finite"), "{reason}")
            }
            other => panic!("{solver:?}: expected Singular, got {other:?}"),
        }
    }
}

/// Badly scaled but well-posed: a 1e20 penalty on one unknown of a path Laplacian, and a row
/// scaled by 1e-12. Equilibration keeps the singularity test from refusing them, and the
/// solutions match a dense solve.
#[test]
fn badly_scaled_well_posed_systems_still_solve() {
    let n = 30;
    let mut a = DMatrix::zeros(n, n);
    for i in 0..n {
        a[(i, i)] = 2.0;
        if i + 1 < n {
            a[(i, i + 1)] = -1.0;
            a[(i + 1, i)] = -1.0;
        }
    }
    a[(0, 0)] += 1e20;
    let b: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let reference = a
        .clone()
        .lu()
        .solve(&DMatrix::from_column_slice(n, 1, &b))
        .unwrap();
    let (s, values) = general(&a);
    let x = solve(&s, &values, &b, &Solver::lu()).unwrap();
    assert!((&x - &reference).amax() <= 1e-12 * reference.amax());
    let lower = stored(&a, Symmetry::Lower);
    for solver in [Solver::cholesky(), Solver::ldlt(), Solver::auto()] {
        let x = solve(&lower.0, &lower.1, &b, &solver).unwrap();
        assert!(
            (&x - &reference).amax() <= 1e-12 * reference.amax(),
            "{solver:?}"
        );
    }
    // A row scaled by 1e-12 (non-symmetric now): LU still solves it.
    let mut scaled = a.clone();
    scaled.row_mut(5).scale_mut(1e-12);
    let mut rhs = b.clone();
    rhs[5] *= 1e-12;
    let (s, values) = general(&scaled);
    let x = solve(&s, &values, &rhs, &Solver::lu()).unwrap();
    assert!((&x - &reference).amax() <= 1e-10 * reference.amax());
}

/// `bicgstab(inf, 10)` returned x = 0 as converged; NaN, negative and ≥ 1 tolerances, zero
/// iterations and a zero GMRES restart are refused before any work.
#[test]
fn krylov_settings_are_validated() {
    let s = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Lower).unwrap();
    let bad = [
        Iterative::bicgstab(f64::INFINITY, 10),
        Iterative::bicgstab(1.0, 10),
        Iterative::cg(f64::NAN, 10),
        Iterative::minres(-1e-8, 10),
        Iterative::gmres(0, 1e-10, 10),
        Iterative::gmres(5, 1e-10, 0),
        Iterative::cg(1e-10, 10).with_absolute_tolerance(f64::NAN),
        Iterative::cg(1e-10, 10).with_absolute_tolerance(-1.0),
    ];
    for solver in bad {
        assert!(
            matches!(solver.validate(), Err(Error::InvalidArgument { .. })),
            "{solver:?}"
        );
        match solve(&s, &[4.0, 1.0, 3.0], &[1.0, 2.0], &solver) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("{solver:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    let x = solve(&s, &[4.0, 1.0, 3.0], &[1.0, 2.0], &Iterative::cg(1e-12, 10)).unwrap();
    assert!((x[0] - 1.0 / 11.0).abs() < 1e-10 && (x[1] - 7.0 / 11.0).abs() < 1e-10);
}

/// One dense row (an arrow matrix, n = 20 000): nested dissection for LU would form the columns'
/// intersection graph with n² entries (a 4 GiB allocation that aborted). It falls back to COLAMD,
/// says so, and solves.
#[test]
fn lu_nested_dissection_with_a_dense_row_falls_back_to_colamd() {
    let n = 20_000;
    let mut pairs = Vec::new();
    let mut vals = Vec::new();
    for i in 0..n {
        pairs.push((i, i));
        vals.push(4.0 + (i % 7) as f64);
        if i + 1 < n {
            pairs.push((n - 1, i)); // the dense last row
            vals.push(0.5);
        }
    }
    let (s, slots) = Structure::from_pairs(n, n, &pairs, Symmetry::General).unwrap();
    let mut values = vec![0.0; s.nnz()];
    for (k, v) in slots.into_iter().zip(vals) {
        values[k] += v;
    }
    let solver = Solver::lu().with_ordering(Ordering::NestedDissection);
    let f = solver.factorize(&s, &values).unwrap();
    assert!(
        f.describe().contains("replaced by COLAMD"),
        "{}",
        f.describe()
    );
    // x = 1 everywhere: b_i = a_ii, b_{n−1} = a_{n−1,n−1} + 0.5 (n − 1).
    let mut b = DMatrix::from_fn(n, 1, |i, _| 4.0 + (i % 7) as f64);
    b[n - 1] += 0.5 * (n - 1) as f64;
    let mut x = b.clone();
    f.solve_in_place(&mut x).unwrap();
    assert!((x.add_scalar(-1.0)).amax() < 1e-12);
}
