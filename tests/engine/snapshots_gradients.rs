//! Snapshots of gradients at fixed parameter points (10 significant digits), each cross-checked
//! against central finite differences in the same test. Reviewed snapshot files live in
//! tests/snapshots/.

use std::sync::Arc;

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::optim::Objective;
use sparsegrad::problems::cantilever::{Cantilever, Compliance};
use sparsegrad::problems::graph::{chain_edges, laplacian_assembly, random_edges};
use sparsegrad::{check, Result, Solver, Tape, Var};

/// Tape gradient vs finite differences, then the snapshot of the gradient.
fn check_and_snapshot(
    name: &str,
    f: impl for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>>,
    x0: &DMatrix<f64>,
) {
    let report = check::gradient(f, x0, &check::Options::default()).unwrap();
    assert!(report.max_relative_error < 1e-6, "{name}: {report:?}");
    let text: String = std::iter::once(format!("loss {:.10e}\n", report.loss))
        .chain(
            report
                .gradient
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{i:>4} {g:.9e}\n")),
        )
        .collect();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn cantilever_compliance_gradient() {
    let model = Arc::new(Cantilever::new(6, 3, 1e-3).unwrap());
    let objective = Compliance(model.clone());
    // A fixed, non-uniform design: the uniform one plus a deterministic ripple.
    let phi: Vec<f64> = model
        .uniform_design()
        .iter()
        .enumerate()
        .map(|(e, p)| p + 0.3 * (e as f64 * 0.7).sin())
        .collect();
    let x0 = DMatrix::from_vec(phi.len(), 1, phi);
    check_and_snapshot(
        "cantilever_6x3_compliance",
        |t, x| objective.loss(t, x),
        &x0,
    );
}

#[test]
fn edge_weight_misfit_gradient() {
    let mut rng = StdRng::seed_from_u64(7);
    let n = 12;
    let edges = random_edges(n, 6 * n, &mut rng);
    let asm = laplacian_assembly(n, &edges, 1.0).unwrap();
    let b = DMatrix::from_fn(n, 3, |_, _| rng.random_range(-1.0..1.0));
    let observed = DMatrix::from_fn(n, 3, |_, _| rng.random_range(-0.5..0.5));
    let x0 = DMatrix::from_fn(edges.len(), 1, |_, _| rng.random_range(-0.5..0.5));
    check_and_snapshot(
        "edge_weights_n12_misfit",
        |t, phi| {
            let a = t.assemble(&asm, phi.exp())?;
            let x = t.solve(a, t.constant(b.clone()), &Solver::cholesky())?;
            Ok((x - t.constant(observed.clone())).square().sum() * 0.5)
        },
        &x0,
    );
}

#[test]
fn chain_seed_problem_gradient() {
    let n = 16;
    let asm = laplacian_assembly(n, &chain_edges(n).unwrap(), 1.0).unwrap();
    let b = DMatrix::from_fn(n, 1, |i, _| ((i * 7) % 5) as f64 / 5.0);
    let x0 = DMatrix::from_fn(n, 1, |i, _| 0.2 + ((i * 3) % 7) as f64 / 7.0);
    check_and_snapshot(
        "chain_n16_seed_loss",
        |t, theta| {
            let a = t.assemble(&asm, theta)?;
            Ok(t.solve(a, t.constant(b.clone()), &Solver::cholesky())?
                .square()
                .sum())
        },
        &x0,
    );
}

#[test]
fn quasi_harmonic_smooth_gradient() {
    use sparsegrad::problems::mesh::TriMesh;
    use sparsegrad::problems::quasi_harmonic::{Energy, QuasiHarmonic};
    let mesh = TriMesh::unit_square(8).unwrap();
    let handles = vec![
        mesh.grid_vertex(1, 1).unwrap(),
        mesh.grid_vertex(6, 2).unwrap(),
        mesh.grid_vertex(3, 6).unwrap(),
    ];
    let problem = QuasiHarmonic::new(mesh, handles, Energy::Smooth, 0.1).unwrap();
    let nt = problem.n_triangles();
    // α, β away from the harmonic point (where ∂/∂α vanishes).
    let x0 = DMatrix::from_fn(2 * nt, 1, |i, _| {
        if i < nt {
            0.4 * (i as f64 * 0.37).sin()
        } else {
            0.3 * (i as f64 * 0.23).cos()
        }
    });
    check_and_snapshot("quasi_harmonic_8x8_smooth", |t, x| problem.loss(t, x), &x0);
}
