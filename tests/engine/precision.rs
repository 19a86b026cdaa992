//! Mixed and single precision on the CPU (issue 33): the f32 factor with f64 refinement gives
//! the f64 path's loss and gradient (multifrontal and faer numeric phases, LLᵀ and LDLᵀ, several
//! right-hand sides), single precision is within 1e-4, an ill-conditioned system is an error
//! under explicit `Mixed` and an f64 fallback under `Auto`, and what an f32 factor cannot answer
//! is refused.

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::problems::elasticity::ElasticBlock;
use sparsegrad::problems::graph::{chain_edges, laplacian_assembly};
use sparsegrad::{Assembly, Error, Factorization, Precision, Solver, Tape};

use crate::common::grid;

fn random(rows: usize, cols: usize, seed: u64, range: std::ops::Range<f64>) -> DMatrix<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    DMatrix::from_fn(rows, cols, |_, _| rng.random_range(range.clone()))
}

/// (loss, ∂loss/∂θ, refinement steps of the forward solve) of Σ (A(θ)⁻¹ B)² · w.
fn loss_and_gradient(
    asm: &Assembly,
    theta: &DMatrix<f64>,
    b: &DMatrix<f64>,
    solver: &Solver,
) -> (f64, Vec<f64>, Option<usize>) {
    let tape = Tape::new();
    let th = tape.var(theta.clone());
    let a = tape.assemble(asm, th).unwrap();
    let x = tape.solve(a, tape.constant(b.clone()), solver).unwrap();
    let steps = tape.solve_info(x).unwrap().forward.map(|c| c.iterations);
    let loss = x.sum_squares();
    let value = loss.value().unwrap()[0];
    let g = tape.backward(loss).unwrap();
    (value, g.wrt(th).as_slice().to_vec(), steps)
}

fn relative(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Mixed precision's loss and gradient equal the f64 path's to 1e-12 / 1e-10 relative: a 3D
/// grid (multifrontal numeric phase), a 2D grid (faer's), a 3D elasticity block (three unknowns
/// per node), three right-hand sides each; the refinement took a few steps.
#[test]
fn mixed_precision_gives_the_f64_loss_and_gradient() {
    let elastic = ElasticBlock::cube(6).assembly(0.3).unwrap();
    let cases = [
        ("grid3 24³", grid(24, true, 0.01)),
        ("grid 60²", grid(60, false, 0.01)),
        ("elastic 6³", elastic),
    ];
    for (name, asm) in cases {
        let n = asm.structure().nrows();
        let theta = random(asm.n_params(), 1, 1, 0.5..1.5);
        let b = random(n, 3, 2, -1.0..1.0);
        let (l64, g64, none) = loss_and_gradient(&asm, &theta, &b, &Solver::cholesky());
        assert_eq!(none, None, "{name}: the f64 factor does not refine");
        let mixed = Solver::cholesky().with_precision(Precision::Mixed);
        let (l, g, steps) = loss_and_gradient(&asm, &theta, &b, &mixed);
        let (dl, dg) = ((l - l64).abs() / l64.abs(), relative(&g, &g64));
        eprintln!("{name}: loss {dl:.1e}, gradient {dg:.1e}, {steps:?} steps");
        assert!(dl <= 1e-12, "{name}: loss differs by {dl:e}");
        assert!(dg <= 1e-10, "{name}: gradient differs by {dg:e}");
        let steps = steps.expect("a mixed solve reports its refinement steps");
        assert!((2..=6).contains(&steps), "{name}: {steps} refinement steps");
        // Single precision: within 1e-4 (relative error ≈ κ·6e-8 per solve).
        let single = Solver::cholesky().with_precision(Precision::F32);
        let (l32, g32, _) = loss_and_gradient(&asm, &theta, &b, &single);
        let (dl, dg) = ((l32 - l64).abs() / l64.abs(), relative(&g32, &g64));
        eprintln!("{name}: single loss {dl:.1e}, gradient {dg:.1e}");
        assert!(dl <= 1e-4 && dg <= 1e-4, "{name}: single {dl:e} / {dg:e}");
        // …and is not f64-accurate: it really ran in f32.
        assert!(
            dg > 1e-10,
            "{name}: an f32 gradient equal to f64's to {dg:e}"
        );
    }
}

/// The seed's problem (A = I + L(θ) of a cyclic chain, one right-hand side) in single
/// precision: gradient within 1e-4 of f64.
#[test]
fn single_precision_gradient_on_the_seed_chain_is_within_1e_4() {
    let n = 1 << 12;
    let asm = laplacian_assembly(n, &chain_edges(n).unwrap(), 1.0).unwrap();
    let theta = random(asm.n_params(), 1, 3, 0.5..1.5);
    let b = random(n, 1, 4, -1.0..1.0);
    let (l64, g64, _) = loss_and_gradient(&asm, &theta, &b, &Solver::cholesky());
    let single = Solver::cholesky().with_precision(Precision::F32);
    let (l32, g32, _) = loss_and_gradient(&asm, &theta, &b, &single);
    let (dl, dg) = ((l32 - l64).abs() / l64, relative(&g32, &g64));
    assert!(dl <= 1e-4 && dg <= 1e-4, "chain: {dl:e} / {dg:e}");
    assert!(dg > 0.0);
}

/// LDLᵀ in mixed precision on a symmetric indefinite matrix (a shifted Laplacian with
/// eigenvalues on both sides of 0): the solution equals the f64 LDLᵀ one to 1e-12.
#[test]
fn mixed_ldlt_solves_an_indefinite_system_to_f64_accuracy() {
    let asm = grid(20, false, -0.37);
    let theta = vec![1.0; asm.n_params()];
    let values = asm.values(&theta).unwrap();
    let b = random(400, 2, 5, -1.0..1.0);
    let f64_factor = Solver::ldlt().factorize(asm.structure(), &values).unwrap();
    let mut x64 = b.clone();
    f64_factor.solve_in_place(&mut x64).unwrap();
    let mixed = Solver::ldlt()
        .with_precision(Precision::Mixed)
        .factorize(asm.structure(), &values)
        .unwrap();
    let mut x = b.clone();
    mixed.solve_in_place(&mut x).unwrap();
    let d = relative(x.as_slice(), x64.as_slice());
    assert!(d <= 1e-12, "mixed LDLᵀ differs by {d:e}");
    assert!(mixed.describe().contains("f32"), "{}", mixed.describe());
    assert_eq!(mixed.method(), Some(sparsegrad::Method::Ldlt));
}

/// ‖b − A x‖∞ / (‖A‖∞‖x‖∞ + ‖b‖∞), A from its assembly.
fn backward_error(asm: &Assembly, values: &[f64], b: &DMatrix<f64>, x: &DMatrix<f64>) -> f64 {
    let a = asm.structure().to_csc_full(values).unwrap();
    let r = b - &a * x;
    // Symmetric: the largest row sum is the largest column sum.
    let a_norm = (0..a.ncols())
        .map(|j| a.col(j).values().iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    r.amax() / (a_norm * x.amax() + b.amax())
}

/// κ ≈ 1e10 (a 40³ grid Laplacian shifted by 1e-9: 1.6e10 predicted flops, so `Auto` picks
/// mixed precision): plain refinement stalls. `Auto` falls back to f64 — the same solution as `F64` to
/// 1e-13 — and says why; explicit `Mixed` goes on with GMRES-IR and returns a solution with
/// about the f64 factor's backward error (within 10× of it; measured 3.4×), never a silently
/// less accurate one. At
/// κ ≈ 1e14 explicit `Mixed` is `Error::PrecisionLoss`.
#[test]
fn ill_conditioned_systems_fall_back_under_auto_and_are_refined_or_refused_under_mixed() {
    let asm = grid(40, true, 1e-9);
    let theta = vec![1.0; asm.n_params()];
    let values = asm.values(&theta).unwrap();
    let structure = asm.structure();
    let report = Solver::cholesky()
        .with_precision(Precision::Auto)
        .analysis_report(structure)
        .unwrap();
    assert_eq!(report.precision, Precision::Mixed, "{report:?}");
    let b = random(structure.nrows(), 1, 6, -1.0..1.0);
    let reference = Solver::cholesky().factorize(structure, &values).unwrap();
    let mut x64 = b.clone();
    reference.solve_in_place(&mut x64).unwrap();
    let eta64 = backward_error(&asm, &values, &b, &x64);

    let auto = Solver::cholesky()
        .with_precision(Precision::Auto)
        .factorize(structure, &values)
        .unwrap();
    assert_eq!(
        auto.fallback_reason(),
        None,
        "the f32 factor itself is fine"
    );
    let mut x = b.clone();
    auto.solve_in_place(&mut x).unwrap();
    let reason = auto.fallback_reason().expect("Auto says it fell back");
    assert!(
        reason.contains("stalled") && reason.contains("f64"),
        "{reason}"
    );
    let d = relative(x.as_slice(), x64.as_slice());
    assert!(d <= 1e-13, "Auto's fallback differs from F64 by {d:e}");
    assert!(auto.describe().contains("fallback"), "{}", auto.describe());

    let mixed = Solver::cholesky()
        .with_precision(Precision::Mixed)
        .factorize(structure, &values)
        .unwrap();
    let mut x = b.clone();
    mixed.solve_in_place(&mut x).unwrap();
    let eta = backward_error(&asm, &values, &b, &x);
    let steps = mixed.solve_info().forward.unwrap().iterations;
    eprintln!("κ ≈ 1e10: mixed η = {eta:e} in {steps} steps, f64 η = {eta64:e}");
    assert!(
        eta <= 10.0 * eta64.max(f64::EPSILON),
        "mixed η {eta:e} vs f64 {eta64:e}"
    );
    assert!(steps > 4, "GMRES-IR ran: {steps} steps");

    let hopeless = grid(20, true, 1e-13);
    let values = hopeless.values(&vec![1.0; hopeless.n_params()]).unwrap();
    let outcome = Solver::cholesky()
        .with_precision(Precision::Mixed)
        .factorize(hopeless.structure(), &values)
        .and_then(|f| {
            let mut x = DMatrix::from_element(8000, 1, 1.0);
            f.solve_in_place(&mut x)
        });
    match outcome {
        Err(Error::PrecisionLoss { reason }) => eprintln!("κ ≈ 1e14, explicit Mixed: {reason}"),
        other => panic!("explicit Mixed on κ ≈ 1e14 gave {other:?}"),
    }
}

/// `Auto` on a well-conditioned large factor runs mixed precision (reported by
/// `analysis_report` and `describe`) and answers log-determinants and selected inverses from
/// an f64 factor; explicit `Mixed` refuses them, `F32` gives an f32-accurate log-determinant, and
/// LU or the reference backend refuse a reduced precision.
#[test]
fn reduced_precision_refuses_what_it_cannot_answer() {
    let asm = grid(40, true, 0.5);
    let theta = vec![1.0; asm.n_params()];
    let values = asm.values(&theta).unwrap();
    let structure = asm.structure();
    let exact = Solver::cholesky()
        .factorize(structure, &values)
        .unwrap()
        .log_determinant()
        .unwrap();
    let auto = Solver::cholesky()
        .with_precision(Precision::Auto)
        .factorize(structure, &values)
        .unwrap();
    assert!(
        auto.describe().contains("mixed precision"),
        "{}",
        auto.describe()
    );
    assert_eq!(auto.fallback_reason(), None);
    let ld = auto.log_determinant().unwrap();
    assert!((ld.log_abs - exact.log_abs).abs() <= 1e-10 * exact.log_abs.abs());
    let explicit = Solver::cholesky()
        .with_precision(Precision::Mixed)
        .factorize(structure, &values)
        .unwrap();
    for refused in [
        explicit.log_determinant().map(|_| ()),
        explicit.diag_inverse().map(|_| ()),
        explicit.selected_inverse(structure).map(|_| ()),
    ] {
        match refused {
            Err(Error::Unsupported { reason }) => assert!(reason.contains("f64"), "{reason}"),
            other => panic!("explicit Mixed answered {other:?}"),
        }
    }
    let single = Solver::cholesky()
        .with_precision(Precision::F32)
        .factorize(structure, &values)
        .unwrap();
    let ld32 = single.log_determinant().unwrap().log_abs;
    let d = (ld32 - exact.log_abs).abs() / exact.log_abs.abs();
    assert!(d <= 1e-5 && d > 0.0, "f32 log-determinant off by {d:e}");
    // Half the factor's bytes (values f32, the same indices).
    let bytes = |f: &dyn Factorization| f.stored_bytes().unwrap() as f64;
    let f64_factor = Solver::cholesky().factorize(structure, &values).unwrap();
    let ratio = bytes(single.as_ref()) / bytes(f64_factor.as_ref());
    assert!(
        (0.5..0.6).contains(&ratio),
        "f32 / f64 factor bytes {ratio}"
    );
    for solver in [
        Solver::lu().with_precision(Precision::Mixed),
        Solver::cholesky()
            .with_implementation(sparsegrad::Implementation::Reference)
            .with_precision(Precision::F32),
    ] {
        match solver.factorize(structure, &values) {
            Err(Error::Unsupported { reason }) => assert!(reason.contains("precision")),
            other => panic!("{solver:?} gave {:?}", other.map(|f| f.describe())),
        }
    }
}

/// Mixed precision is deterministic across thread counts: the f32 multifrontal factor is
/// bit-identical on 1 and 2 threads, and so are the refined solutions.
#[test]
fn mixed_precision_is_bit_identical_on_one_and_two_threads() {
    let asm = grid(26, true, 0.01);
    let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
    let b = random(asm.structure().nrows(), 2, 7, -1.0..1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let f = Solver::cholesky()
                .with_precision(Precision::Mixed)
                .factorize(asm.structure(), &values)
                .unwrap();
            let mut x = b.clone();
            f.solve_in_place(&mut x).unwrap();
            x
        })
    };
    let (one, two) = (run(1), run(2));
    assert!(one
        .iter()
        .zip(two.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
