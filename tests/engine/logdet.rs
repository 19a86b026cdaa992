//! Log-determinants (issue 31): the selected inverse against dense inverses (simplicial and
//! supernodal factors, the multifrontal numeric phase, LLᵀ and LDLᵀ, one-triangle and full
//! storage), and the `logdet` node's value, gradient (against dense and central differences)
//! and JVP, with its errors.

use std::sync::Arc;

use nalgebra::DMatrix;
use nalgebra_sparse::{CooMatrix, CscMatrix};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::{Error, Solver, Structure, Symmetry, Tape};

use crate::common::grid;

fn weights(m: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..m).map(|_| rng.random_range(0.5..1.5)).collect()
}

fn dense(structure: &Structure, values: &[f64]) -> DMatrix<f64> {
    DMatrix::from(&structure.to_csc_full(values).unwrap())
}

/// The selected inverse at every stored entry against the dense inverse: ≤ 1e-12 relative.
fn selected_inverse_matches_dense(
    name: &str,
    structure: &Arc<Structure>,
    values: &[f64],
    solver: &Solver,
) {
    let factor = solver.factorize(structure, values).unwrap();
    let z = factor.selected_inverse(structure).unwrap();
    let inv = dense(structure, values).try_inverse().unwrap();
    let scale = inv.amax();
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut worst: f64 = 0.0;
    for j in 0..structure.ncols() {
        for k in cp[j]..cp[j + 1] {
            worst = worst.max((z[k] - inv[(ri[k], j)]).abs() / scale);
        }
    }
    assert!(worst <= 1e-12, "{name} ({}): {worst:e}", factor.describe());
    eprintln!("{name}: {}", factor.describe());
    let diag = factor.diag_inverse().unwrap();
    for (i, d) in diag.iter().enumerate() {
        assert!(
            (d - inv[(i, i)]).abs() <= 1e-12 * scale,
            "{name}: diagonal {i}"
        );
    }
}

#[test]
fn selected_inverse_matches_dense_inverses() {
    for (name, asm, shift_solver) in [
        ("2D grid 12², LLᵀ", grid(12, false, 0.1), Solver::cholesky()),
        ("3D grid 6³, LLᵀ", grid(6, true, 0.1), Solver::cholesky()),
        ("2D grid 40², LLᵀ", grid(40, false, 0.1), Solver::cholesky()),
        (
            "3D grid 11³, LLᵀ (supernodal)",
            grid(11, true, 0.1),
            Solver::cholesky(),
        ),
        (
            "3D grid 11³, LDLᵀ (supernodal)",
            grid(11, true, -0.3),
            Solver::ldlt(),
        ),
    ] {
        let values = asm.values(&weights(asm.n_params(), 1)).unwrap();
        selected_inverse_matches_dense(name, asm.structure(), &values, &shift_solver);
    }
    // Indefinite (L(w) − 0.3·I has eigenvalues on both sides of 0): LDLᵀ.
    let asm = grid(7, true, -0.3);
    let values = asm.values(&weights(asm.n_params(), 2)).unwrap();
    selected_inverse_matches_dense(
        "3D grid 7³, LDLᵀ",
        asm.structure(),
        &values,
        &Solver::ldlt(),
    );
    // Both triangles stored (Symmetry::Full), a random SPD matrix.
    let (structure, values) = random_spd_full(60, 3);
    selected_inverse_matches_dense(
        "random SPD, full storage",
        &structure,
        &values,
        &Solver::cholesky(),
    );
    selected_inverse_matches_dense(
        "random SPD, full storage, LDLᵀ",
        &structure,
        &values,
        &Solver::ldlt(),
    );
}

/// A random SPD matrix with both triangles stored.
fn random_spd_full(n: usize, seed: u64) -> (Arc<Structure>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut coo = CooMatrix::new(n, n);
    for i in 0..n {
        coo.push(i, i, n as f64 * 0.25 + rng.random_range(0.0..1.0));
    }
    for _ in 0..3 * n {
        let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
        if i != j {
            let v = rng.random_range(-1.0..1.0);
            coo.push(i, j, v);
            coo.push(j, i, v);
        }
    }
    let csc = CscMatrix::from(&coo);
    let tape = Tape::new();
    let a = tape.csc_var(&csc, Symmetry::Full).unwrap();
    (a.structure().unwrap(), csc.values().to_vec())
}

/// A factor large enough for the multifrontal numeric phase: selected-inverse entries of a few
/// columns against solves with unit vectors (a dense inverse would be 1.4 GB).
#[test]
fn selected_inverse_of_a_multifrontal_factor_matches_solves() {
    let asm = grid(24, true, 0.05);
    let values = asm.values(&weights(asm.n_params(), 4)).unwrap();
    let structure = asm.structure();
    let factor = Solver::cholesky().factorize(structure, &values).unwrap();
    assert!(
        factor.describe().contains("multifrontal"),
        "{}",
        factor.describe()
    );
    let z = factor.selected_inverse(structure).unwrap();
    let n = structure.ncols();
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    for j in [0, 1, n / 3, n / 2, n - 2, n - 1] {
        let mut e = DMatrix::zeros(n, 1);
        e[j] = 1.0;
        factor.solve_in_place(&mut e).unwrap();
        let scale = e.amax();
        for k in cp[j]..cp[j + 1] {
            let err = (z[k] - e[ri[k]]).abs() / scale;
            assert!(err <= 1e-12, "column {j}, row {}: {err:e}", ri[k]);
        }
    }
}

/// The selected inverse of a 3D factor large enough for the parallel top-down pass (fronts on
/// the rayon pool, faer's parallel kernels inside the large ones): the same bits on 1 and 2
/// threads, and the same log-determinant gradient.
#[test]
fn selected_inverse_is_bit_identical_at_one_and_two_threads() {
    let asm = grid(30, true, 0.05);
    let structure = asm.structure();
    let report = Solver::cholesky().analysis_report(structure).unwrap();
    assert!(
        report.prediction.flops >= 1e9,
        "{report:?}: too small to run in parallel"
    );
    let theta = weights(asm.n_params(), 9);
    let values = asm.values(&theta).unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let factor = Solver::cholesky().factorize(structure, &values).unwrap();
                assert!(factor.describe().contains("multifrontal"));
                let z = factor.selected_inverse(structure).unwrap();
                let tape = Tape::new();
                let th = tape.var(DMatrix::from_column_slice(theta.len(), 1, &theta));
                let a = tape.assemble(&asm, th).unwrap();
                let ld = a.logdet(&Solver::cholesky()).unwrap();
                let g = tape.backward(ld).unwrap().wrt(th).clone();
                (z, g)
            })
    };
    let (z1, g1) = run(1);
    let (z2, g2) = run(2);
    assert!(z1.iter().all(|v| v.is_finite()) && z1.iter().any(|v| *v != 0.0));
    assert!(z1 == z2, "selected inverses differ between 1 and 2 threads");
    assert!(g1 == g2, "logdet gradients differ between 1 and 2 threads");
}

/// log det A(w) of a grid Laplacian (one-triangle storage, through an assembly): the value
/// against the dense LU determinant (≤ 1e-12), the gradient against tr(A⁻¹ ∂A/∂w_k) (dense,
/// ≤ 1e-11) and central differences (≤ 1e-7), the JVP against differences.
#[test]
fn logdet_value_gradient_and_jvp() {
    for (name, asm, solver) in [
        ("2D, LLᵀ", grid(6, false, 0.2), Solver::cholesky()),
        (
            "3D, LDLᵀ of an SPD matrix",
            grid(4, true, 0.2),
            Solver::ldlt(),
        ),
    ] {
        let m = asm.n_params();
        let w = weights(m, 5);
        let logdet_at = |q: &[f64]| -> (f64, DMatrix<f64>) {
            let tape = Tape::new();
            let p = tape.var(DMatrix::from_column_slice(m, 1, q));
            let ld = tape.assemble(&asm, p).unwrap().logdet(&solver).unwrap();
            let g = tape.backward(ld).unwrap();
            (ld.scalar().unwrap(), g.wrt(p).clone())
        };
        let (value, grad) = logdet_at(&w);
        let a = dense(asm.structure(), &asm.values(&w).unwrap());
        let expected = a.clone().lu().determinant().ln();
        assert!(
            (value - expected).abs() <= 1e-12 * expected.abs(),
            "{name}: {value} vs {expected}"
        );
        let inv = a.try_inverse().unwrap();
        let zero = asm.values(&vec![0.0; m]).unwrap();
        let dense_grad = DMatrix::from_fn(m, 1, |k, _| {
            let mut e = vec![0.0; m];
            e[k] = 1.0;
            let mut ak = asm.values(&e).unwrap();
            for (v, c) in ak.iter_mut().zip(&zero) {
                *v -= c;
            }
            (&inv * dense(asm.structure(), &ak)).trace()
        });
        let err = (&grad - &dense_grad).amax() / dense_grad.amax();
        assert!(err <= 1e-11, "{name}: gradient vs dense {err:e}");
        let mut rng = StdRng::seed_from_u64(6);
        let v: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..1.0)).collect();
        let h = 1e-6;
        let shifted =
            |s: f64| -> Vec<f64> { w.iter().zip(&v).map(|(a, b)| a + s * h * b).collect() };
        let fd = (logdet_at(&shifted(1.0)).0 - logdet_at(&shifted(-1.0)).0) / (2.0 * h);
        let directional: f64 = grad.iter().zip(&v).map(|(g, v)| g * v).sum();
        assert!(
            (directional - fd).abs() <= 1e-7 * fd.abs().max(1.0),
            "{name}: {directional} vs {fd}"
        );
        let tape = Tape::new();
        let p = tape.var(DMatrix::from_column_slice(m, 1, &w));
        let ld = tape.assemble(&asm, p).unwrap().logdet(&solver).unwrap();
        let jvp = tape
            .jvp(&[(p, DMatrix::from_column_slice(m, 1, &v))], &[ld])
            .unwrap();
        assert!(
            (jvp[0][0] - directional).abs() <= 1e-12 * directional.abs(),
            "{name}: JVP"
        );
    }
}

/// Full storage: each stored entry's gradient is (A⁻¹)_ij on its own (the entries are
/// independent), the same as the selected inverse.
#[test]
fn logdet_gradient_with_full_storage_is_the_inverse_at_each_entry() {
    let (structure, values) = random_spd_full(30, 7);
    let tape = Tape::new();
    let a = tape.sparse_var(&structure, &values).unwrap();
    let ld = tape.logdet(a, &Solver::cholesky()).unwrap();
    let g = tape.backward(ld).unwrap();
    let inv = dense(&structure, &values).try_inverse().unwrap();
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    for j in 0..structure.ncols() {
        for k in cp[j]..cp[j + 1] {
            assert!((g.wrt(a)[k] - inv[(ri[k], j)]).abs() <= 1e-12 * inv.amax());
        }
    }
}

/// Errors: a general structure, an LU factorizer, det A < 0 (slogdet gives the sign and
/// log |det A|), a dense argument.
#[test]
fn logdet_errors_are_clear() {
    let asm = grid(3, false, -0.5);
    let w = vec![1.0; asm.n_params()];
    let tape = Tape::new();
    let a = tape
        .assemble(&asm, tape.var(DMatrix::from_column_slice(w.len(), 1, &w)))
        .unwrap();
    let e = tape.logdet(a, &Solver::ldlt()).unwrap_err();
    let values = asm.values(&w).unwrap();
    let det = dense(asm.structure(), &values).lu().determinant();
    assert!(det < 0.0, "{det}");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let (sign, ld) = tape.slogdet(a, &Solver::ldlt()).unwrap();
    assert_eq!(sign, -1.0);
    assert!((ld.scalar().unwrap() - det.abs().ln()).abs() <= 1e-12 * det.abs().ln().abs().max(1.0));
    let spd = grid(3, false, 0.5);
    let b = tape
        .assemble(
            &spd,
            tape.constant(DMatrix::from_element(spd.n_params(), 1, 1.0)),
        )
        .unwrap();
    let e = tape.logdet(b, &Solver::lu()).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    let mut coo = CooMatrix::new(2, 2);
    coo.push(0, 0, 2.0);
    coo.push(1, 0, 1.0);
    coo.push(1, 1, 3.0);
    let general = tape
        .csc_var(&CscMatrix::from(&coo), Symmetry::General)
        .unwrap();
    let e = tape.logdet(general, &Solver::cholesky()).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("LU"), "{e}");
    // The LU factorization itself says why it has no determinant or selected inverse.
    let lu = Solver::lu()
        .factorize(&general_structure(), &[2.0, 1.0, 3.0])
        .unwrap();
    for e in [
        lu.log_determinant().map(|_| ()).unwrap_err(),
        lu.diag_inverse().map(|_| ()).unwrap_err(),
        lu.selected_inverse(&general_structure())
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::Unsupported { reason } if reason.contains("private")),
            "{e:?}"
        );
    }
    let e = tape
        .logdet(tape.var(DMatrix::identity(2, 2)), &Solver::cholesky())
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
}

/// The 2×2 lower-triangular pattern [(0,0), (1,0), (1,1)] as a general structure.
fn general_structure() -> Arc<Structure> {
    Structure::from_pairs(2, 2, &[(0, 0), (1, 0), (1, 1)], Symmetry::General)
        .unwrap()
        .0
}

/// Samples x = Pᵀ L⁻ᵀ z from the kept factor: xᵀ A x = zᵀ z exactly (to rounding) for LLᵀ
/// (simplicial, supernodal, multifrontal) and LDLᵀ of an SPD matrix; the empirical variances of
/// 4000 seeded draws are within 10 % of diag(A⁻¹); LDLᵀ of an indefinite matrix refuses.
#[test]
fn samples_have_covariance_a_inverse() {
    use sparsegrad::problems::graph::standard_normal;
    let mut rng = StdRng::seed_from_u64(8);
    for (name, asm, solver) in [
        (
            "2D, LLᵀ simplicial",
            grid(10, false, 0.3),
            Solver::cholesky(),
        ),
        (
            "3D 11³, LLᵀ supernodal",
            grid(11, true, 0.3),
            Solver::cholesky(),
        ),
        ("3D 11³, LDLᵀ", grid(11, true, 0.3), Solver::ldlt()),
        (
            "3D 24³, LLᵀ multifrontal",
            grid(24, true, 0.3),
            Solver::cholesky(),
        ),
    ] {
        let values = asm.values(&weights(asm.n_params(), 9)).unwrap();
        let structure = asm.structure();
        let factor = solver.factorize(structure, &values).unwrap();
        let n = structure.ncols();
        let z = DMatrix::from_fn(n, 3, |_, _| standard_normal(&mut rng));
        let mut x = z.clone();
        factor.sample_in_place(&mut x).unwrap();
        let a = structure.to_csc_full(&values).unwrap();
        for c in 0..3 {
            let xc = DMatrix::from_column_slice(n, 1, x.column(c).as_slice());
            let quad = (xc.transpose() * (&a * &xc))[0];
            let zz = z.column(c).norm_squared();
            assert!(
                (quad - zz).abs() <= 1e-10 * zz,
                "{name}: xᵀAx = {quad}, zᵀz = {zz}"
            );
        }
    }
    let asm = grid(5, false, 0.3);
    let values = asm.values(&weights(asm.n_params(), 10)).unwrap();
    let factor = Solver::cholesky()
        .factorize(asm.structure(), &values)
        .unwrap();
    let draws = 4000;
    let mut x = DMatrix::from_fn(25, draws, |_, _| standard_normal(&mut rng));
    factor.sample_in_place(&mut x).unwrap();
    let variance = factor.diag_inverse().unwrap();
    for (i, v) in variance.iter().enumerate() {
        let empirical = x.row(i).iter().map(|s| s * s).sum::<f64>() / draws as f64;
        assert!(
            (empirical - v).abs() <= 0.1 * v,
            "node {i}: {empirical} vs {v}"
        );
    }
    let indefinite = grid(4, false, -0.5);
    let values = indefinite
        .values(&vec![1.0; indefinite.n_params()])
        .unwrap();
    let factor = Solver::ldlt()
        .factorize(indefinite.structure(), &values)
        .unwrap();
    let e = factor
        .sample_in_place(&mut DMatrix::zeros(16, 1))
        .unwrap_err();
    assert!(matches!(e, Error::NotPositiveDefinite { .. }), "{e:?}");
}

/// The Gaussian-field likelihood (logdet + quadratic term): its gradient against finite
/// differences, and maximum likelihood through argmin's L-BFGS recovering the four region
/// conductances and the nugget from 400 seeded samples of a 12 × 12 field to within 5 %.
#[test]
fn gaussian_field_parameters_are_recovered() {
    use sparsegrad::check;
    use sparsegrad::optim::{minimize, Algorithm, ArgminProblem, Settings};
    use sparsegrad::problems::gaussian_field::{GaussianField, Likelihood};
    let field = Arc::new(GaussianField::new(12).unwrap());
    let truth = [
        0.8f64.ln(),
        2.0f64.ln(),
        0.5f64.ln(),
        1.5f64.ln(),
        0.3f64.ln(),
    ];
    let mut rng = StdRng::seed_from_u64(11);
    let samples = field.sample(&truth, 400, &mut rng).unwrap();
    let likelihood = Likelihood {
        field: field.clone(),
        samples,
    };
    let report = check::objective(
        &likelihood,
        vec![0.1, -0.2, 0.3, 0.0, -0.5],
        &check::Options::default(),
    )
    .unwrap();
    assert!(report.passed, "{report:?}");
    let out = minimize(
        ArgminProblem::new(likelihood),
        vec![0.0; 5],
        &Settings::new(Algorithm::default(), 200),
        None,
    )
    .unwrap();
    for (k, (got, want)) in out.params.iter().zip(truth).enumerate() {
        let err = (got.exp() - want.exp()).abs() / want.exp();
        eprintln!(
            "parameter {k}: {:.4} vs {:.4} ({err:.4})",
            got.exp(),
            want.exp()
        );
        assert!(
            err <= 0.05,
            "parameter {k}: {} vs {} ({err:.3})",
            got.exp(),
            want.exp()
        );
    }
}

/// A logdet and a solve of the same matrix node share one factorization, in either order
/// (counted on the structure), and both gradients still match a tape that factors twice.
#[test]
fn logdet_and_solve_of_one_matrix_factor_once() {
    let asm = grid(8, false, 0.2);
    let m = asm.n_params();
    let w = DMatrix::from_column_slice(m, 1, &weights(m, 12));
    let b = DMatrix::from_fn(64, 2, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let structure = asm.structure().clone();
    let run = |logdet_first: bool, shared: bool| -> (usize, DMatrix<f64>) {
        let before = structure.numeric_factorizations();
        let tape = Tape::new();
        let p = tape.var(w.clone());
        let a = tape.assemble(&asm, p).unwrap();
        // Without sharing: the second use assembles its own copy of A (another node).
        let a2 = if shared {
            a
        } else {
            tape.assemble(&asm, p).unwrap()
        };
        let (ld, x) = if logdet_first {
            let ld = a.logdet(&Solver::cholesky()).unwrap();
            (
                ld,
                a2.solve(tape.constant(b.clone()), &Solver::cholesky())
                    .unwrap(),
            )
        } else {
            let x = a2
                .solve(tape.constant(b.clone()), &Solver::cholesky())
                .unwrap();
            (a.logdet(&Solver::cholesky()).unwrap(), x)
        };
        let loss = ld + x.sum_squares() * 0.5;
        let g = tape.backward(loss).unwrap().wrt(p).clone();
        (structure.numeric_factorizations() - before, g)
    };
    for logdet_first in [true, false] {
        let (once, g) = run(logdet_first, true);
        let (twice, reference) = run(logdet_first, false);
        assert_eq!((once, twice), (1, 2), "logdet first: {logdet_first}");
        assert!((&g - &reference).amax() <= 1e-12 * reference.amax());
    }
}
