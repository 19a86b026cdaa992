//! The symbolic analysis runs once per structure and method, however many numeric
//! factorizations follow.

use nalgebra::DMatrix;
use sparsegrad::{Implementation, Solver, Symmetry, Tape};

use crate::common::{general, spd};

fn evaluate_ten_times(p: &crate::common::Problem, solver: Solver) -> (usize, Vec<f64>) {
    let asm = p.assembly();
    let mut losses = Vec::new();
    for it in 0..10 {
        let tape = Tape::new();
        let theta: Vec<f64> = p
            .theta
            .iter()
            .map(|t| t * (1.0 + 0.05 * it as f64))
            .collect();
        let th = tape.var(DMatrix::from_vec(p.m, 1, theta));
        let a = tape.assemble(&asm, th).unwrap();
        let x = tape.solve(a, tape.constant(p.b.clone()), &solver).unwrap();
        let loss = x.square().sum();
        let g = tape.backward(loss).unwrap();
        assert!(g.wrt(th).iter().all(|v| v.is_finite()));
        losses.push(loss.scalar().unwrap());
    }
    (asm.structure().symbolic_analyses(), losses)
}

#[test]
fn fast_cholesky_analyses_once_across_ten_evaluations() {
    let (count, losses) = evaluate_ten_times(&spd(80, 2, Symmetry::Lower, 41), Solver::cholesky());
    assert_eq!(count, 1);
    // New values each time: the numeric factorization really is redone.
    assert!(losses.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn reference_cholesky_analyses_once_across_ten_evaluations() {
    let solver = Solver::cholesky().with_implementation(Implementation::Reference);
    let (count, losses) = evaluate_ten_times(&spd(80, 2, Symmetry::Full, 42), solver);
    assert_eq!(count, 1);
    assert!(losses.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn lu_analyses_once_across_ten_evaluations() {
    let (count, losses) = evaluate_ten_times(&general(80, 2, 43), Solver::lu());
    assert_eq!(count, 1);
    assert!(losses.windows(2).all(|w| w[0] != w[1]));
}

#[test]
fn each_method_adds_one_analysis_to_a_shared_structure() {
    let p = spd(50, 1, Symmetry::Lower, 44);
    let asm = p.assembly();
    let values = asm.values(&p.theta).unwrap();
    let s = asm.structure();
    assert_eq!(s.symbolic_analyses(), 0);
    for _ in 0..3 {
        Solver::cholesky().factorize(s, &values).unwrap();
    }
    assert_eq!(s.symbolic_analyses(), 1);
    // LDLᵀ shares the Cholesky analysis.
    Solver::ldlt().factorize(s, &values).unwrap();
    assert_eq!(s.symbolic_analyses(), 1);
    Solver::lu().factorize(s, &values).unwrap();
    Solver::lu().factorize(s, &values).unwrap();
    assert_eq!(s.symbolic_analyses(), 2);
    Solver::cholesky()
        .with_implementation(Implementation::Reference)
        .factorize(s, &values)
        .unwrap();
    assert_eq!(s.symbolic_analyses(), 3);
}
