//! MUMPS backend (feature `mpi`), in one process (MPI singleton): gradients against faer and a
//! dense reference, the analysis kept across factorizations, transposed solves for a
//! non-symmetric matrix, and errors for singular and bad input. The 2-rank run is
//! `examples/distributed.rs` under mpirun (in .ci/run).
#![cfg(feature = "mpi")]

use nalgebra::DMatrix;
use sparsegrad::backend::mumps::Mumps;
use sparsegrad::problems::graph::{grid3_edges, laplacian_assembly};
use sparsegrad::{Assembly, Error, Factorizer, Solver, Structure, Symmetry, Tape};

fn value_and_gradient(
    asm: &Assembly,
    theta: &[f64],
    b: &DMatrix<f64>,
    solver: &dyn Factorizer,
) -> (f64, Vec<f64>) {
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(theta.len(), 1, theta));
    let a = tape.assemble(asm, th).unwrap();
    let x = tape.solve(a, tape.constant(b.clone()), solver).unwrap();
    let loss = x.sum_squares();
    let g = tape.backward(loss).unwrap();
    (loss.scalar().unwrap(), g.wrt(th).as_slice().to_vec())
}

#[test]
fn mumps_matches_faer_and_dense_and_reports_errors() {
    let universe = mpi::initialize().expect("MPI initializes once in this test binary");
    let world = universe.world();
    let mumps = Mumps::new(&world);

    // SPD grid through the tape: same loss and gradient as faer's Cholesky; analysis kept.
    let k = 8;
    let n = k * k * k;
    let edges = grid3_edges(k).unwrap();
    let asm = laplacian_assembly(n, &edges, 1.0).unwrap();
    let b = DMatrix::from_fn(n, 3, |i, c| 1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos());
    let mut analysed = 0;
    for round in 0..3 {
        let theta: Vec<f64> = (0..edges.len())
            .map(|e| 1.5 + 0.5 * (e as f64).sin() + 0.1 * round as f64)
            .collect();
        let (lm, gm) = value_and_gradient(&asm, &theta, &b, &mumps);
        let (lf, gf) = value_and_gradient(&asm, &theta, &b, &Solver::cholesky());
        assert!((lm - lf).abs() <= 1e-12 * lf.abs(), "{lm} vs {lf}");
        let scale = gf.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = gm
            .iter()
            .zip(&gf)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-11 * scale,
            "gradient differs by {diff:e} of {scale:e}"
        );
        if round == 0 {
            analysed = asm.structure().symbolic_analyses();
        }
    }
    // The analyses of the first evaluation (MUMPS's and faer's) serve the next two.
    assert_eq!(asm.structure().symbolic_analyses(), analysed);
    assert_eq!(asm.structure().numeric_factorizations(), 6);
    let memory = mumps.last_memory().expect("factorized");
    assert!(memory.factor_entries > 0 && memory.factor_entries == memory.factor_entries_total);

    // Non-symmetric 3×3: forward and transposed solves against dense LU.
    let dense = DMatrix::from_row_slice(3, 3, &[4.0, 1.0, 0.0, 2.0, 5.0, 1.0, 0.0, 3.0, 6.0]);
    let s = Structure::new(
        3,
        3,
        vec![0, 2, 5, 7],
        vec![0, 1, 0, 1, 2, 1, 2],
        Symmetry::General,
    )
    .unwrap();
    let values = [4.0, 2.0, 1.0, 5.0, 3.0, 1.0, 6.0];
    let f = mumps.factorize(&s, &values).unwrap();
    let rhs = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 2.0, 1.0, 3.0, -1.0]);
    let mut x = rhs.clone();
    f.solve_in_place(&mut x).unwrap();
    assert!((&dense * &x - &rhs).amax() < 1e-13);
    let mut y = rhs.clone();
    f.solve_transpose_in_place(&mut y).unwrap();
    assert!((dense.transpose() * &y - &rhs).amax() < 1e-13);
    assert!(f.stored_bytes().is_some());
    assert!(f.describe().contains("MUMPS"));

    // Singular (zero column): an error, not an abort; the instance survives for a good matrix.
    let singular = [4.0, 2.0, 0.0, 0.0, 0.0, 1.0, 6.0];
    match mumps.factorize(&s, &singular) {
        Err(Error::Singular { reason, .. }) => {
            assert!(reason.contains("INFOG(1) = -10"), "{reason}")
        }
        Err(e) => panic!("expected Singular, got {e}"),
        Ok(_) => panic!("a singular matrix factorized"),
    }
    assert!(mumps.factorize(&s, &values).is_ok());
    // Bad input: wrong length, non-finite value, wrong right-hand side.
    assert!(matches!(
        mumps.factorize(&s, &values[..6]),
        Err(Error::StructureMismatch { .. })
    ));
    let mut nan = values;
    nan[3] = f64::NAN;
    assert!(matches!(
        mumps.factorize(&s, &nan),
        Err(Error::NonFinite { .. })
    ));
    let mut wrong = DMatrix::zeros(4, 1);
    assert!(matches!(
        f.solve_in_place(&mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));

    // Both triangles stored (Symmetry::Full): MUMPS (SYM = 1) gets one triangle, so the
    // off-diagonal entries count once (they counted twice: relative error 4.2 vs faer).
    let spd = DMatrix::from_row_slice(3, 3, &[4.0, 1.0, 0.5, 1.0, 5.0, 2.0, 0.5, 2.0, 6.0]);
    let full = Structure::new(
        3,
        3,
        vec![0, 3, 6, 9],
        vec![0, 1, 2, 0, 1, 2, 0, 1, 2],
        Symmetry::Full,
    )
    .unwrap();
    let values: Vec<f64> = spd.as_slice().to_vec(); // column-major = CSC order here
    for solver in [
        &mumps as &dyn Factorizer,
        &Mumps::symmetric_indefinite(&world),
    ] {
        let f = solver.factorize(&full, &values).unwrap();
        let mut x = rhs.clone();
        f.solve_in_place(&mut x).unwrap();
        assert!((&spd * &x - &rhs).amax() < 1e-13);
    }
    // Unsymmetric values on a Full structure are refused, not half-read.
    let mut unsymmetric = values.clone();
    unsymmetric[1] = 3.0;
    assert!(matches!(
        mumps.factorize(&full, &unsymmetric),
        Err(Error::NotSymmetric { .. })
    ));
}
