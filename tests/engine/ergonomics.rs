//! The newcomer-facing API: element assembly, CSC gradients, homogeneous Dirichlet, softmax /
//! logsumexp, flexible inputs, the gradient checker's verdict — each against dense references or
//! finite differences.

use nalgebra::{DMatrix, DVector};
use nalgebra_sparse::{CooMatrix, CscMatrix};
use sparsegrad::check;
use sparsegrad::optim::Objective;
use sparsegrad::{Assembly, Dirichlet, Error, Result, Solver, Symmetry, Tape, Var};

#[test]
fn push_element_keeps_the_stored_triangle_itself() {
    // A 3-node triangle element with a symmetric 3×3 matrix, nodes out of order.
    let ke = DMatrix::from_row_slice(3, 3, &[4.0, -1.0, -2.0, -1.0, 5.0, -3.0, -2.0, -3.0, 6.0]);
    let dofs = [2, 0, 3];
    for symmetry in [Symmetry::Lower, Symmetry::Full, Symmetry::General] {
        let asm = Assembly::builder(4, 4, 1)
            .symmetry(symmetry)
            .element(&dofs, 0, &ke)
            .build()
            .unwrap();
        let dense = DMatrix::from(&asm.to_csc_full(&[2.0]).unwrap());
        let mut expected = DMatrix::zeros(4, 4);
        for a in 0..3 {
            for b in 0..3 {
                expected[(dofs[a], dofs[b])] += 2.0 * ke[(a, b)];
            }
        }
        assert_eq!(dense, expected, "{symmetry:?}");
    }
    // Wrong size, and an unsymmetric element for symmetric storage, are errors at build.
    let e = Assembly::builder(4, 4, 1)
        .element(&[0, 1], 0, &ke)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                left: (3, 3),
                right: (2, 2),
                ..
            }
        ),
        "{e}"
    );
    let mut skew = ke.clone();
    skew[(0, 1)] = 7.0;
    let e = Assembly::builder(4, 4, 1)
        .symmetry(Symmetry::Lower)
        .element(&dofs, 0, &skew)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::NotSymmetric { .. }), "{e}");
    // General storage takes it as it is.
    assert!(Assembly::builder(4, 4, 1)
        .element(&dofs, 0, &skew)
        .build()
        .is_ok());
}

#[test]
fn csc_gradient_matches_the_dense_adjoint() -> Result<()> {
    // d/dA of sum(A⁻¹ b) = −λ xᵀ at the stored entries, λ = A⁻ᵀ 1.
    let mut coo = CooMatrix::new(3, 3);
    for (i, j, v) in [
        (0, 0, 4.0),
        (1, 0, 1.0),
        (1, 1, 5.0),
        (0, 2, 2.0),
        (2, 2, 3.0),
    ] {
        coo.push(i, j, v);
    }
    let a_in = CscMatrix::from(&coo);
    let b = [1.0, 2.0, 3.0];
    let tape = Tape::new();
    let a = tape.csc_var(&a_in, Symmetry::General)?;
    let x = a.solve(tape.constant(b), &Solver::lu())?;
    let grad = tape.backward(x.sum())?.wrt_csc(a)?;
    let dense = DMatrix::from(&a_in);
    let xd = dense
        .clone()
        .lu()
        .solve(&DVector::from_column_slice(&b))
        .unwrap();
    let lambda = dense
        .transpose()
        .lu()
        .solve(&DVector::from_element(3, 1.0))
        .unwrap();
    assert_eq!(grad.col_offsets(), a_in.col_offsets());
    assert_eq!(grad.row_indices(), a_in.row_indices());
    for (i, j, &g) in grad.triplet_iter() {
        assert!((g + lambda[i] * xd[j]).abs() < 1e-14, "({i}, {j}): {g}");
    }
    // A dense variable has no CSC gradient.
    let tape = Tape::new();
    let v = tape.var(1.0);
    let g = tape.backward(v.square())?;
    assert!(matches!(g.wrt_csc(v), Err(Error::Unsupported { .. })));
    // nalgebra-sparse's errors convert with `?`.
    let bad = CscMatrix::try_from_csc_data(2, 2, vec![0, 1, 1], vec![5], vec![1.0]);
    let e: Error = bad.unwrap_err().into();
    assert!(matches!(e, Error::InvalidPattern { .. }), "{e}");
    Ok(())
}

#[test]
fn homogeneous_dirichlet_equals_zero_prescribed_values() -> Result<()> {
    let ke = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 1.0]);
    let mut b = Assembly::builder(5, 5, 4).symmetry(Symmetry::Lower);
    for e in 0..4 {
        b.push_element(&[e, e + 1], e, &ke);
    }
    let d = Dirichlet::new(&b.build()?, &[0, 4])?;
    let tape = Tape::new();
    let k = tape.var([1.0, 2.0, 3.0, 4.0]);
    let f = tape.constant(DMatrix::from_fn(5, 2, |i, c| (i + c) as f64));
    let u0 = d.solve_homogeneous(k, f, &Solver::cholesky())?;
    let u1 = d.solve(
        k,
        f,
        tape.constant(DMatrix::zeros(2, 2)),
        &Solver::cholesky(),
    )?;
    assert_eq!(u0.value()?, u1.value()?);
    let g0 = tape.backward(u0.sum_squares())?;
    let g1 = tape.backward(u1.sum_squares())?;
    assert_eq!(g0.wrt(k), g1.wrt(k));
    Ok(())
}

#[test]
fn softmax_and_logsumexp_match_finite_differences() {
    let x0 = DMatrix::from_row_slice(3, 2, &[0.3, -1.0, 2.0, 0.5, -0.7, 1.5]);
    let weights = DMatrix::from_row_slice(3, 2, &[1.0, -2.0, 0.5, 3.0, -1.0, 0.25]);
    let w = weights.clone();
    let softmax = check::gradient(
        move |tape, x| Ok(x.softmax().dot(tape.constant(&w))),
        &x0,
        &check::Options::default(),
    )
    .unwrap();
    assert!(
        softmax.passed && softmax.max_relative_error < 1e-8,
        "{softmax:?}"
    );
    let lse = check::gradient(
        |_tape, x| Ok((x.logsumexp().square()).sum()),
        &x0,
        &check::Options::default(),
    )
    .unwrap();
    assert!(lse.passed && lse.max_relative_error < 1e-8, "{lse:?}");
    // Values: columns sum to one; logsumexp is the stable log Σ exp.
    let tape = Tape::new();
    let x = tape.var(&x0);
    let s = x.softmax().value().unwrap();
    for c in 0..2 {
        assert!((s.column(c).sum() - 1.0).abs() < 1e-15);
        let exact = x0.column(c).iter().map(|v| v.exp()).sum::<f64>().ln();
        assert!((x.logsumexp().value().unwrap()[c] - exact).abs() < 1e-15);
    }
    let big = tape.var([1000.0, 999.0]);
    assert!(
        (big.logsumexp().scalar().unwrap() - (1000.0 + (1.0 + (-1f64).exp()).ln())).abs() < 1e-12
    );
    assert!(matches!(
        tape.var(DMatrix::zeros(0, 2)).softmax().error(),
        Some(Error::ShapeMismatch { .. })
    ));
}

/// A model whose gradient is deliberately wrong in component 1.
struct Wrong;
impl Objective for Wrong {
    fn loss<'t>(&self, tape: &'t Tape, p: Var<'t>) -> Result<Var<'t>> {
        // The tape sees ½‖p‖² but the "loss" adds a constant-looking term that secretly depends on
        // p[1] through a gather the tape treats as a constant.
        let hidden = tape.constant(p.value()?.map(|v| v * v * v));
        Ok(p.square().sum() * 0.5 + hidden.gather(&[1]).sum())
    }
}

#[test]
fn the_checker_gives_a_verdict_with_its_noise_level() {
    let good = check::gradient(
        |_t, x| Ok((x.exp() * x.square()).sum()),
        [0.1, 0.2, 0.3],
        &check::Options::default(),
    )
    .unwrap();
    assert!(good.passed && good.noise < 1e-9, "{good:?}");
    let bad = check::objective(&Wrong, vec![0.5, 1.5, -0.5], &check::Options::default()).unwrap();
    assert!(!bad.passed, "{bad:?}");
    assert_eq!(bad.worst_index, 1);
    // 3 p₁² = 6.75 is missing from the tape gradient at p₁ = 1.5.
    assert!((bad.numeric - bad.analytic - 6.75).abs() < 1e-6, "{bad:?}");
}

/// f(p) = Σ (p_i − i)² · 1e4: the default stopping rules end the run at the minimum, long before
/// the iteration limit, whatever the loss's scale.
struct ScaledBowl(f64);
impl Objective for ScaledBowl {
    fn loss<'t>(&self, tape: &'t Tape, p: Var<'t>) -> Result<Var<'t>> {
        let target = tape.constant([0.0, 1.0, 2.0, 3.0]);
        Ok((p - target).square().sum() * self.0)
    }
}

#[test]
fn default_stopping_rules_end_converged_runs() {
    use sparsegrad::optim::{minimize, Algorithm, ArgminProblem, Settings};
    for scale in [1e-3, 1.0, 1e4] {
        let out = minimize(
            ArgminProblem::new(ScaledBowl(scale)),
            vec![5.0; 4],
            &Settings::new(Algorithm::default(), 1000),
            None,
        )
        .unwrap();
        assert!(out.iterations < 50, "scale {scale}: {out:?}");
        assert!(out.termination.contains("converged"), "{out:?}");
        for (i, p) in out.params.iter().enumerate() {
            assert!((p - i as f64).abs() < 1e-6, "scale {scale}: {out:?}");
        }
    }
    // Tolerances of 0 run to the limit (Adam never reaches an exact zero gradient).
    let out = minimize(
        ArgminProblem::new(ScaledBowl(1.0)),
        vec![5.0; 4],
        &Settings {
            gradient_tolerance: 0.0,
            cost_tolerance: 0.0,
            ..Settings::new(Algorithm::Adam(0.1), 30)
        },
        None,
    )
    .unwrap();
    assert_eq!(out.iterations, 30);
}

/// A loss dominated by rounding (a constant 1e9 added: every value carries ~1e-7 of rounding)
/// is checked at steps long enough for it, and still catches a wrong gradient.
#[test]
fn the_checker_does_not_cry_wolf_on_a_rounding_dominated_loss() {
    let x0 = [0.5, -2.0, 1.25];
    let options = check::Options::default();
    let quadratic = check::gradient(|_t, x| Ok(x.square().sum() + 1e9), x0, &options).unwrap();
    assert!(quadratic.passed, "{quadratic:?}");
    assert!(quadratic.max_relative_error < 1e-6, "{quadratic:?}");
    // The measured noise of the loss is its rounding: ~ε · 1e9 (within a factor of a few).
    assert!(
        quadratic.loss_noise > 1e-8 && quadratic.loss_noise < 1e-6,
        "{quadratic:?}"
    );
    let curved = check::gradient(
        |_t, x| Ok((x.exp() * x.square()).sum() + 1e9),
        [0.5, -1.5, 1.25],
        &options,
    )
    .unwrap();
    assert!(
        curved.passed && curved.max_relative_error < 1e-5,
        "{curved:?}"
    );
    assert_eq!(curved.inconclusive, 0, "{curved:?}");
    assert!(
        curved.step > 1e-3,
        "a longer step than the default: {curved:?}"
    );
    // The same constant added to the wrong model: component 1 misses 3 p₁² = 6.75.
    struct WrongAndLarge;
    impl Objective for WrongAndLarge {
        fn loss<'t>(&self, tape: &'t Tape, p: Var<'t>) -> Result<Var<'t>> {
            Ok(Wrong.loss(tape, p)? + 1e9)
        }
    }
    let bad = check::objective(&WrongAndLarge, vec![0.5, 1.5, -0.5], &options).unwrap();
    assert!(!bad.passed && bad.worst_index == 1, "{bad:?}");
    assert!((bad.numeric - bad.analytic - 6.75).abs() < 1e-4, "{bad:?}");
}

/// A gradient entry of 7e-18 beside a largest entry of 1e-10, in a loss of size 1: the entries
/// below the difference quotient's resolution are reported inconclusive, not failed; the others
/// are checked; and a check where nothing can be resolved does not pass.
#[test]
fn the_checker_reports_tiny_components_as_inconclusive() {
    fn f<'t>(t: &'t Tape, x: Var<'t>) -> Result<Var<'t>> {
        let tiny = t.constant([0.5e-17, 0.0]);
        let small = t.constant([0.0, 1e-10]);
        Ok((x.square() * tiny).sum() + (x * small).sum() + 1.0)
    }
    let r = check::gradient(f, [0.7, 0.3], &check::Options::default()).unwrap();
    assert!(r.passed, "{r:?}");
    assert_eq!((r.checked, r.inconclusive), (2, 1), "{r:?}");
    assert!((r.gradient[0] - 0.7e-17).abs() < 1e-30 && r.gradient[1] == 1e-10);
    fn unresolvable<'t>(_t: &'t Tape, x: Var<'t>) -> Result<Var<'t>> {
        Ok(x.sum() * 1e-12 + 1e9)
    }
    let r = check::gradient(unresolvable, [0.7, 0.3], &check::Options::default()).unwrap();
    assert!(!r.passed && r.inconclusive == r.checked, "{r:?}");
}

#[test]
fn the_checker_checks_chosen_components_and_directions() {
    let options = check::Options {
        components: Some(vec![2, 0]),
        ..Default::default()
    };
    fn f<'t>(_t: &'t Tape, x: Var<'t>) -> Result<Var<'t>> {
        Ok((x.exp() * x.square()).sum())
    }
    let r = check::gradient(f, [0.1, 0.2, 0.3, 0.4], &options).unwrap();
    assert!(r.passed && r.checked == 2 && r.worst_index != 1, "{r:?}");
    let out_of_range = check::Options {
        components: Some(vec![0, 4]),
        ..Default::default()
    };
    assert!(matches!(
        check::gradient(f, [0.1, 0.2, 0.3, 0.4], &out_of_range),
        Err(Error::IndexOutOfRange {
            index: 4,
            bound: 4,
            entry: 1,
            ..
        })
    ));
    // Directional: ∇f·v against d/dt f(x + t v); a wrong component shows along a direction that
    // sees it and not along one that does not.
    let v = [1.0, -1.0, 0.5];
    let d = check::directional(f, [0.1, 0.2, 0.3], v, &Default::default()).unwrap();
    let exact: f64 = [0.1f64, 0.2, 0.3]
        .iter()
        .zip(v)
        .map(|(&x, v)| (x.exp() * (x * x + 2.0 * x)) * v)
        .sum();
    assert!(d.passed && (d.analytic - exact).abs() < 1e-15, "{d:?}");
    assert!((d.numeric - exact).abs() < 1e-9 * exact.abs(), "{d:?}");
    fn wrong<'t>(t: &'t Tape, p: Var<'t>) -> Result<Var<'t>> {
        Wrong.loss(t, p)
    }
    let sees = check::directional(
        wrong,
        [0.5, 1.5, -0.5],
        [0.0, 1.0, 0.0],
        &Default::default(),
    );
    let sees = sees.unwrap();
    assert!(
        !sees.passed && (sees.numeric - sees.analytic - 6.75).abs() < 1e-6,
        "{sees:?}"
    );
    let blind = check::directional(
        wrong,
        [0.5, 1.5, -0.5],
        [1.0, 0.0, 1.0],
        &Default::default(),
    );
    assert!(blind.unwrap().passed);
    assert!(matches!(
        check::directional(f, [0.1, 0.2], [0.0, 0.0], &Default::default()),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        check::directional(f, [0.1, 0.2], [1.0], &Default::default()),
        Err(Error::ShapeMismatch { .. })
    ));
}

/// A large random term list (many parallel ranges in the build: 400 000 terms over a 3 000 ×
/// 3 000 pattern, duplicates on every entry, a few constants) builds exactly the pattern and the
/// merged terms a plain sequential reference computes: entries sorted by (column, row), each
/// entry's terms merged by parameter in input order.
#[test]
fn parallel_assembly_build_equals_a_sequential_reference() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    let (n, params, count) = (3_000, 500, 400_000);
    let mut rng = StdRng::seed_from_u64(33);
    let mut builder = Assembly::builder(n, n, params);
    // (column, row) → parameter → coefficients in input order; constants likewise.
    let mut reference: BTreeMap<(usize, usize), BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    let mut constants: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for t in 0..count {
        // Clustered rows (as element loops give), so entries repeat.
        let (col, row) = (rng.random_range(0..n), rng.random_range(0..40) * 75);
        if t % 97 == 0 {
            let c = rng.random_range(-1.0..1.0);
            builder.push_constant(row, col, c);
            constants.entry((col, row)).or_default().push(c);
        } else {
            let (p, c) = (rng.random_range(0..params), rng.random_range(-1.0..1.0));
            builder.push_entry(row, col, p, c);
            reference
                .entry((col, row))
                .or_default()
                .entry(p)
                .or_default()
                .push(c);
            constants.entry((col, row)).or_default();
        }
    }
    let asm = builder.build().unwrap();
    let s = asm.structure();
    let keys: Vec<(usize, usize)> = constants.keys().copied().collect();
    assert_eq!(s.nnz(), keys.len());
    let p: Vec<f64> = (0..params).map(|k| 1.0 + k as f64 * 1e-3).collect();
    let values = asm.values(&p).unwrap();
    for (k, &(col, row)) in keys.iter().enumerate() {
        assert_eq!(s.row_idx()[k], row);
        assert!(s.col_ptr()[col] <= k && k < s.col_ptr()[col + 1]);
        let merged: Vec<(usize, f64)> = asm.terms(k).unwrap().collect();
        let expected: Vec<(usize, f64)> = reference
            .get(&(col, row))
            .map(|by| by.iter().map(|(&q, cs)| (q, cs.iter().sum())).collect())
            .unwrap_or_default();
        assert_eq!(merged, expected, "entry {k}");
        let constant: f64 = constants[&(col, row)].iter().sum();
        let value = constant + expected.iter().map(|&(q, c)| c * p[q]).sum::<f64>();
        assert!(
            (values[k] - value).abs() <= 1e-12 * (1.0 + value.abs()),
            "entry {k}"
        );
    }
}

/// Every kind of bad term or constant is named by `build`, whichever the parallel validation
/// meets first: the first bad parameter or coefficient before any position, then the first
/// position out of range, and non-finite constants.
#[test]
fn assembly_build_names_the_first_bad_term_and_constant() {
    let base = || {
        let mut b = Assembly::builder(3, 3, 2);
        for t in 0..200_000 {
            b.push_entry(t % 3, (t / 3) % 3, t % 2, 1.0);
        }
        b
    };
    let mut b = base();
    b.push_entry(7, 0, 0, 1.0);
    b.push_entry(0, 0, 5, 1.0);
    match b.build() {
        Err(Error::IndexOutOfRange {
            what: "parameter",
            entry,
            index: 5,
            ..
        }) => {
            assert_eq!(entry, 200_001)
        }
        other => panic!("{other:?}"),
    }
    let mut b = base();
    b.push_entry(0, 9, 0, 1.0);
    b.push_entry(8, 0, 0, 1.0);
    match b.build() {
        Err(Error::IndexOutOfRange {
            what: "column",
            entry,
            index: 9,
            ..
        }) => {
            assert_eq!(entry, 200_000)
        }
        other => panic!("{other:?}"),
    }
    let mut b = base();
    b.push_entry(1, 1, 1, f64::NAN);
    assert!(matches!(
        b.build(),
        Err(Error::NonFinite {
            context: "Assembly coefficient",
            ..
        })
    ));
    let mut b = base();
    b.push_constant(2, 1, f64::INFINITY);
    assert!(matches!(
        b.build(),
        Err(Error::NonFinite {
            context: "Assembly constant",
            row: 2,
            col: 1,
            ..
        })
    ));
    let mut b = base();
    b.push_constant(4, 1, 1.0);
    assert!(matches!(
        b.build(),
        Err(Error::IndexOutOfRange {
            what: "row",
            index: 4,
            ..
        })
    ));
    let mut b = base();
    assert!(matches!(
        b.reserve(usize::MAX / 2),
        Err(Error::OutOfMemory { .. })
    ));
    assert_eq!(b.build().unwrap().structure().nnz(), 9);
}
