//! GPU backend tests. Each test opens GPU 0; where there is none (no `cuda` feature, no driver,
//! no device) it prints the reason and returns. With a GPU, every gradient is compared with the
//! CPU backend's: f64 and mixed precision to ≤ 1e-10 relative, f32 to ≤ 1e-5 relative (the
//! matrices here have condition numbers ≤ ~40, and f32 solves lose ≈ κ · 6e-8).

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::problems::graph::{chain_edges, grid_edges, laplacian_assembly};
use sparsegrad::{
    Assembly, Device, Error, Factorizer, Iterative, Precision, Solver, Structure, Symmetry, Tape,
};

/// The GPU's description, or `None` after printing why the test is skipped.
fn gpu() -> Option<String> {
    match sparsegrad::backend::device_info(0) {
        Ok(info) => Some(info),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn cuda(precision: Precision) -> Device {
    Device::Cuda {
        ordinal: 0,
        precision,
    }
}

/// A = I + L(θ) on a graph, stored as one triangle, or mirrored to full storage.
fn system(edges: &[(usize, usize)], n: usize, full: bool, seed: u64) -> (Assembly, Vec<f64>) {
    let asm = if full {
        let mut b = Assembly::builder(n, n, edges.len()).symmetry(Symmetry::Full);
        for i in 0..n {
            b.push_constant(i, i, 1.0);
        }
        for (e, &(i, j)) in edges.iter().enumerate() {
            b.push_entry(i, i, e, 1.0);
            b.push_entry(j, j, e, 1.0);
            b.push_entry(i, j, e, -1.0);
            b.push_entry(j, i, e, -1.0);
        }
        b.build().unwrap()
    } else {
        laplacian_assembly(n, edges, 1.0).unwrap()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let theta = (0..edges.len())
        .map(|_| rng.random_range(0.5..2.0))
        .collect();
    (asm, theta)
}

/// Loss Σ W ⊙ X + ½ ‖X‖² of X = A(θ)⁻¹ B; returns (loss, ∂/∂θ, ∂/∂B).
fn value_and_gradient(
    asm: &Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    w: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> sparsegrad::Result<(f64, Vec<f64>, DMatrix<f64>)> {
    let tape = Tape::new();
    let p = tape.var_vector(nalgebra::DVector::from_column_slice(theta));
    let bv = tape.var(b.clone());
    let a = tape.assemble(asm, p)?;
    let x = tape.solve(a, bv, solver)?;
    let loss = x.dot(tape.constant(w.clone())) + x.sum_squares() * 0.5;
    let g = tape.backward(loss)?;
    Ok((
        loss.value()?[(0, 0)],
        g.wrt(p).as_slice().to_vec(),
        g.wrt(bv).clone(),
    ))
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// A graph's edge list.
type Edges = Vec<(usize, usize)>;

fn cases() -> Vec<(&'static str, Edges, usize)> {
    vec![
        ("chain 4096", chain_edges(4096).unwrap(), 4096),
        ("grid 64²", grid_edges(64).unwrap(), 64 * 64),
    ]
}

fn compare(precision: Precision, bound: f64) {
    let Some(info) = gpu() else { return };
    for (name, edges, n) in cases() {
        for full in [false, true] {
            for k in [1, 5] {
                let (asm, theta) = system(&edges, n, full, 3);
                let mut rng = StdRng::seed_from_u64(9);
                let b = DMatrix::from_fn(n, k, |_, _| rng.random_range(-1.0..1.0));
                let w = DMatrix::from_fn(n, k, |_, _| rng.random_range(-1.0..1.0));
                let cpu = value_and_gradient(&asm, &theta, &b, &w, &Solver::cholesky()).unwrap();
                let solver = Solver::cholesky().on(cuda(precision));
                let gpu = value_and_gradient(&asm, &theta, &b, &w, &solver).unwrap();
                let (el, et, eb) = (
                    ((gpu.0 - cpu.0) / cpu.0).abs(),
                    rel(&gpu.1, &cpu.1),
                    rel(gpu.2.as_slice(), cpu.2.as_slice()),
                );
                println!(
                    "{info} {precision:?} {name} full={full} k={k}: loss {el:.1e}, dθ {et:.1e}, dB {eb:.1e}"
                );
                assert!(el <= bound && et <= bound && eb <= bound, "{name} {k}");
            }
        }
    }
}

#[test]
fn f64_gradients_match_the_cpu() {
    compare(Precision::F64, 1e-10);
}

#[test]
fn mixed_precision_reaches_f64_accuracy() {
    compare(Precision::Mixed, 1e-10);
}

#[test]
fn f32_gradients_within_bound() {
    compare(Precision::F32, 1e-5);
}

#[test]
fn gpu_cg_matches_the_direct_solver() {
    let Some(_) = gpu() else { return };
    let (edges, n) = (grid_edges(48).unwrap(), 48 * 48);
    let (asm, theta) = system(&edges, n, false, 4);
    let mut rng = StdRng::seed_from_u64(2);
    let b = DMatrix::from_fn(n, 3, |_, _| rng.random_range(-1.0..1.0));
    let w = DMatrix::from_fn(n, 3, |_, _| rng.random_range(-1.0..1.0));
    let cpu = value_and_gradient(&asm, &theta, &b, &w, &Solver::cholesky()).unwrap();
    let cg = Iterative::cg(1e-12, 2000).on(Device::cuda());
    let gpu = value_and_gradient(&asm, &theta, &b, &w, &cg).unwrap();
    let et = rel(&gpu.1, &cpu.1);
    println!("GPU CG tol 1e-12: dθ {et:.1e}");
    assert!(et <= 1e-8, "{et:e}");
}

#[test]
fn gpu_cg_reports_not_converged() {
    let Some(_) = gpu() else { return };
    let (edges, n) = (grid_edges(32).unwrap(), 32 * 32);
    let (asm, theta) = system(&edges, n, false, 4);
    let values = asm.values(&theta).unwrap();
    let factor = Iterative::cg(1e-14, 3)
        .on(Device::cuda())
        .factorize(asm.structure(), &values)
        .unwrap();
    let mut x = DMatrix::from_element(n, 2, 1.0);
    match factor.solve_in_place(&mut x) {
        Err(Error::NotConverged {
            iterations,
            relative_residual,
        }) => {
            assert_eq!(iterations, 3);
            assert!(relative_residual > 1e-14 && relative_residual.is_finite());
        }
        other => panic!("expected NotConverged, got {:?}", other.map(|_| ())),
    }
}

/// Without a GPU every GPU request is `Error::NoDevice` with a reason — never a panic.
#[test]
fn no_device_is_an_error() {
    let s = Structure::new(1, 1, vec![0, 1], vec![0], Symmetry::Lower).unwrap();
    let absent = Device::Cuda {
        ordinal: 4096,
        precision: Precision::F64,
    };
    for result in [
        Solver::cholesky()
            .on(absent)
            .factorize(&s, &[2.0])
            .map(|_| ()),
        Iterative::cg(1e-10, 10)
            .on(absent)
            .factorize(&s, &[2.0])
            .map(|_| ()),
        sparsegrad::backend::device_info(4096).map(|_| ()),
    ] {
        match result {
            Err(Error::NoDevice { reason }) => {
                println!("{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected NoDevice, got {other:?}"),
        }
    }
    if gpu().is_none() {
        let tape = Tape::new();
        let a = tape.sparse_var(&s, &[2.0]).unwrap();
        let b = tape.constant(DMatrix::from_element(1, 1, 1.0));
        let err = tape
            .solve(a, b, &Solver::cholesky().on(Device::cuda()))
            .unwrap_err();
        assert!(matches!(err, Error::NoDevice { .. }), "{err}");
    }
}
