//! Dirichlet elimination: the reduced system reproduces the full system's solution with the
//! prescribed values, and gradients flow through both K_ff and the moved right-hand side.

use nalgebra::DMatrix;
use sparsegrad::{check, Dirichlet, Solver, Symmetry, Tape};

use crate::common::spd;

#[test]
fn eliminated_solution_matches_the_constrained_dense_solve() {
    for symmetry in [Symmetry::Lower, Symmetry::Full] {
        let p = spd(30, 2, symmetry, 51);
        let asm = p.assembly();
        let fixed = [3usize, 0, 17, 29];
        let d = Dirichlet::new(&asm, &fixed).unwrap();
        assert_eq!(d.fixed(), &[0, 3, 17, 29]);
        assert_eq!(d.free().len(), 26);
        let g = DMatrix::from_fn(4, 2, |i, c| 0.1 * (i as f64 + 1.0) - 0.3 * c as f64);

        let tape = Tape::new();
        let theta = tape.constant(DMatrix::from_vec(p.m, 1, p.theta.clone()));
        let u = d
            .solve(
                theta,
                tape.constant(p.b.clone()),
                tape.constant(g.clone()),
                &Solver::cholesky(),
            )
            .unwrap();
        let u = u.value().unwrap();

        // Dense: replace the fixed rows by identity rows with the prescribed values.
        let mut a = p.dense(&p.theta);
        let mut rhs = p.b.clone();
        for (r, &i) in d.fixed().iter().enumerate() {
            a.row_mut(i).fill(0.0);
            a[(i, i)] = 1.0;
            for c in 0..2 {
                rhs[(i, c)] = g[(r, c)];
            }
        }
        let dense = a.lu().solve(&rhs).unwrap();
        assert!(
            (&u - &dense).amax() < 1e-12,
            "{symmetry:?}: {:e}",
            (&u - &dense).amax()
        );
        for (r, &i) in d.fixed().iter().enumerate() {
            assert_eq!(u[(i, 0)], g[(r, 0)]);
        }
    }
}

#[test]
fn gradient_through_elimination_matches_finite_differences() {
    let p = spd(25, 2, Symmetry::Lower, 52);
    let asm = p.assembly();
    let d = Dirichlet::new(&asm, &[1, 5, 24, 5]).unwrap();
    assert_eq!(
        (d.n(), d.free().len(), d.fixed()),
        (25, 22, &[1, 5, 24][..])
    );
    let g0 = DMatrix::from_fn(3, 2, |i, c| 0.2 * i as f64 + 0.1 * c as f64 + 0.05);
    // x = [θ; vec(g)]
    let mut x0 = p.theta.clone();
    x0.extend_from_slice(g0.as_slice());
    let x0 = DMatrix::from_vec(x0.len(), 1, x0);
    let m = p.m;
    let report = check::gradient(
        |tape, x| {
            let theta = x.gather(&(0..m).collect::<Vec<_>>());
            let g = tape.concat_columns(&[
                x.gather(&[m, m + 1, m + 2]),
                x.gather(&[m + 3, m + 4, m + 5]),
            ]);
            let u = d.solve(theta, tape.constant(p.b.clone()), g, &Solver::cholesky())?;
            Ok(u.dot(tape.constant(p.w.clone())) + u.square().sum())
        },
        &x0,
        &check::Options::default(),
    )
    .unwrap();
    assert!(report.max_relative_error < 1e-6, "{report:?}");
    // The prescribed values do influence the loss through the coupling.
    assert!(report.gradient.rows(m, 6).amax() > 1e-3);
}

/// `solve_prescribed` is `solve` with an explicit zero load: same values and gradients.
#[test]
fn solve_prescribed_equals_solve_with_zero_loads() {
    let p = spd(25, 2, Symmetry::Lower, 61);
    let asm = p.assembly();
    let d = Dirichlet::new(&asm, &[2, 9, 20]).unwrap();
    let g0 = DMatrix::from_fn(3, 2, |i, c| 0.3 * i as f64 - 0.2 * c as f64 + 0.1);
    let run = |explicit: bool| {
        let tape = Tape::new();
        let th = tape.var(DMatrix::from_column_slice(p.m, 1, &p.theta));
        let g = tape.var(&g0);
        let u = if explicit {
            let f = tape.constant(DMatrix::zeros(25, 2));
            d.solve(th, f, g, &Solver::cholesky()).unwrap()
        } else {
            d.solve_prescribed(th, g, &Solver::cholesky()).unwrap()
        };
        let loss = u.sum_squares();
        let grads = tape.backward(loss).unwrap();
        (
            u.value().unwrap(),
            grads.wrt(th).clone(),
            grads.wrt(g).clone(),
        )
    };
    let (a, b) = (run(true), run(false));
    assert!(a.0.amax() > 0.0 && a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
}
