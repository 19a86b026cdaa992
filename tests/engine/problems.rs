//! Known values of the shipped problem instances.

use nalgebra::DMatrix;
use sparsegrad::problems::cantilever::Cantilever;
use sparsegrad::problems::mesh::TriMesh;
use sparsegrad::problems::quasi_harmonic::{Energy, QuasiHarmonic};
use sparsegrad::Tape;

#[test]
fn cotangent_laplacian_of_the_grid_is_the_five_point_stencil() {
    let n = 6;
    let mesh = TriMesh::unit_square(n).unwrap();
    let (s, values) = mesh.cotangent_laplacian().unwrap();
    let v = |i: usize, j: usize| mesh.grid_vertex(i, j).unwrap();
    let at = |a: usize, b: usize| s.position(a.max(b), a.min(b)).map_or(0.0, |k| values[k]);
    let c = v(2, 3);
    assert!((at(c, c) - 4.0).abs() < 1e-12);
    for nb in [v(1, 3), v(3, 3), v(2, 2), v(2, 4)] {
        assert!((at(c, nb) + 1.0).abs() < 1e-12);
    }
    // The diagonal neighbours across the cut diagonal get cot(90°) = 0.
    assert!(at(c, v(3, 4)).abs() < 1e-12 && at(c, v(1, 2)).abs() < 1e-12);
    // Row sums vanish (constants are harmonic).
    let tape = Tape::new();
    let l = tape.sparse_constant(&s, &values).unwrap();
    let ones = tape.constant(DMatrix::from_element(n * n, 1, 1.0));
    assert!(tape.spmul(l, ones).unwrap().value().unwrap().amax() < 1e-12);
}

#[test]
fn mesh_areas_and_lumped_mass() {
    let square = TriMesh::unit_square(9).unwrap();
    assert!((square.areas().unwrap().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!((square.lumped_mass().unwrap().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let l = TriMesh::l_shape(9).unwrap();
    assert!((l.areas().unwrap().iter().sum::<f64>() - 0.75).abs() < 1e-12);
    assert!(l.grid_vertex(8, 8).is_none() && l.grid_vertex(4, 4).is_some());
    assert_eq!(square.grid_vertex(3, 2), Some(2 * 9 + 3));
}

#[test]
fn quasi_harmonic_weights_are_a_partition_of_unity_for_any_diffusivity() {
    let mesh = TriMesh::l_shape(10).unwrap();
    let handles = vec![
        mesh.grid_vertex(1, 1).unwrap(),
        mesh.grid_vertex(8, 1).unwrap(),
        mesh.grid_vertex(1, 8).unwrap(),
    ];
    let problem = QuasiHarmonic::new(mesh, handles.clone(), Energy::Local, 0.1).unwrap();
    let nt = problem.n_triangles();
    let tape = Tape::new();
    let x = tape.constant(DMatrix::from_fn(2 * nt, 1, |i, _| (i as f64 * 1.7).sin()));
    let w = problem.weights(x).unwrap().value().unwrap();
    let pou = w
        .row_iter()
        .map(|r| (r.sum() - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(pou <= 1e-10, "{pou:e}");
    for (i, &h) in handles.iter().enumerate() {
        for j in 0..3 {
            assert_eq!(w[(h, j)], if i == j { 1.0 } else { 0.0 });
        }
    }
}

#[test]
fn cantilever_conserves_material_and_uniform_design_is_k_one() {
    let model = Cantilever::new(5, 3, 1e-3).unwrap();
    assert_eq!(model.springs.len(), 4 * 3 + 5 * 2 + 2 * 4 * 2);
    let tape = Tape::new();
    let phi = tape.var(DMatrix::from_vec(
        model.springs.len(),
        1,
        model.uniform_design(),
    ));
    let k = model.stiffness(phi).value().unwrap();
    assert!(k.iter().all(|&v| (v - 1.0).abs() < 1e-12));
    let other = tape.var(DMatrix::from_fn(model.springs.len(), 1, |e, _| {
        (e as f64).sin()
    }));
    let k2 = model.stiffness(other).value().unwrap();
    let total: f64 = model.lengths.iter().sum();
    assert!((model.material(k2.as_slice()) - total).abs() < 1e-9 * total);
    assert!(k2.iter().all(|&v| v >= model.k_min));
}

/// The seed benchmark's problem reproduces the loss and gradient norm that the Python peer
/// (SciPy splu + hand adjoint, ../shared/peers/peer_bench.py --rhs 2) printed for it.
#[test]
fn seed_benchmark_problem_matches_the_peer_values() {
    use sparsegrad::problems::graph::{chain_edges, grid_edges, laplacian_assembly};
    use sparsegrad::Solver;
    for (edges, n, loss_ref, grad_ref) in [
        (
            chain_edges(4096).unwrap(),
            4096,
            8377.839161301283,
            2.737809093034715,
        ),
        (
            grid_edges(64).unwrap(),
            4096,
            8254.17923429577,
            0.8767560937348166,
        ),
    ] {
        assert_eq!(
            edges.len(),
            if n == 4096 && edges.len() == 4096 {
                4096
            } else {
                2 * 64 * 63
            }
        );
        let asm = laplacian_assembly(n, &edges, 1.0).unwrap();
        let tape = Tape::new();
        let theta = tape.var(DMatrix::from_fn(edges.len(), 1, |e, _| {
            1.5 + 0.5 * (e as f64).sin()
        }));
        let b = DMatrix::from_fn(n, 2, |i, c| 1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos());
        let a = tape.assemble(&asm, theta).unwrap();
        let loss = tape
            .solve(a, tape.constant(b), &Solver::cholesky())
            .unwrap()
            .sum_squares();
        let grad = tape.backward(loss).unwrap().wrt(theta).norm();
        let l = loss.scalar().unwrap();
        assert!(
            (l - loss_ref).abs() <= 1e-12 * loss_ref,
            "{l} vs {loss_ref}"
        );
        assert!(
            (grad - grad_ref).abs() <= 1e-10 * grad_ref,
            "{grad} vs {grad_ref}"
        );
    }
}

/// The generic-builder form of A = shift·I + L(w) (self-loops skipped: their Laplacian term is 0).
fn laplacian_by_builder(n: usize, edges: &[(usize, usize)], shift: f64) -> sparsegrad::Assembly {
    let mut b =
        sparsegrad::Assembly::builder(n, n, edges.len()).symmetry(sparsegrad::Symmetry::Lower);
    for i in 0..n {
        b.push_constant(i, i, shift);
    }
    for (e, &(i, j)) in edges.iter().enumerate() {
        if i != j {
            b.push_entry(i, i, e, 1.0);
            b.push_entry(j, j, e, 1.0);
            b.push_entry(i.max(j), i.min(j), e, -1.0);
        }
    }
    b.build().unwrap()
}

#[test]
fn laplacian_assembly_equals_the_generic_builder_on_random_multigraphs() {
    use rand::{Rng, SeedableRng};
    use sparsegrad::problems::graph::laplacian_assembly;
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    for trial in 0..40 {
        let n = 1 + trial * 3;
        // Raw random pairs: both orientations, parallel edges and self-loops all occur.
        let edges: Vec<(usize, usize)> = (0..2 * n + trial)
            .map(|_| (rng.random_range(0..n), rng.random_range(0..n)))
            .collect();
        let shift = 0.25 + trial as f64;
        let fast = laplacian_assembly(n, &edges, shift).unwrap();
        let generic = laplacian_by_builder(n, &edges, shift);
        let (s, g) = (fast.structure(), generic.structure());
        assert_eq!(s.col_ptr(), g.col_ptr(), "trial {trial}");
        assert_eq!(s.row_idx(), g.row_idx(), "trial {trial}");
        assert_eq!(fast.constants(), generic.constants());
        for k in 0..s.nnz() {
            assert_eq!(
                fast.terms(k).unwrap().collect::<Vec<_>>(),
                generic.terms(k).unwrap().collect::<Vec<_>>(),
                "trial {trial}, entry {k}"
            );
        }
        // Values are exactly shift·I + L(w) as a dense matrix.
        let w: Vec<f64> = (0..edges.len())
            .map(|_| rng.random_range(0.1..2.0))
            .collect();
        let values = fast.values(&w).unwrap();
        let mut dense = DMatrix::<f64>::identity(n, n) * shift;
        for (&(i, j), &we) in edges.iter().zip(&w) {
            dense[(i, i)] += we;
            dense[(j, j)] += we;
            dense[(i, j)] -= we;
            dense[(j, i)] -= we;
        }
        let cols = s.col_idx();
        for ((&i, &j), &v) in s.row_idx().iter().zip(&cols).zip(&values) {
            assert!(
                (v - dense[(i, j)]).abs() < 1e-12,
                "trial {trial} ({i}, {j})"
            );
        }
    }
    // Out-of-range endpoints name the edge; a non-finite shift is refused.
    let err = laplacian_assembly(3, &[(0, 1), (2, 3)], 1.0).unwrap_err();
    assert!(
        err.to_string().contains("edge 1") || err.to_string().contains("entry 1"),
        "{err}"
    );
    assert!(laplacian_assembly(3, &[(0, 1)], f64::NAN).is_err());
}
