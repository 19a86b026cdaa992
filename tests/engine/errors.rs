//! Every `Error` variant produced from bad input, without a panic, with its message snapshotted.

use nalgebra::DMatrix;
use sparsegrad::{Assembly, Error, Implementation, PatternRule, Solver, Structure, Symmetry, Tape};

/// [[d0, 2], [2, d1]] stored as the lower triangle.
fn two_by_two(d0: f64, d1: f64) -> (std::sync::Arc<Structure>, Vec<f64>) {
    let s = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Lower).unwrap();
    (s, vec![d0, 2.0, d1])
}

fn solve_err(
    s: &std::sync::Arc<Structure>,
    values: &[f64],
    b: DMatrix<f64>,
    solver: impl sparsegrad::Factorizer,
) -> Error {
    let tape = Tape::new();
    let a = tape.sparse_var(s, values).unwrap();
    tape.solve(a, tape.constant(b), &solver).unwrap_err()
}

fn all_errors() -> Vec<(&'static str, Error)> {
    let mut out = Vec::new();
    let ones = |n| DMatrix::from_element(n, 1, 1.0);

    // Shapes.
    let (s, v) = two_by_two(5.0, 5.0);
    out.push((
        "rhs with wrong rows",
        solve_err(&s, &v, ones(3), Solver::cholesky()),
    ));
    out.push((
        "rhs with zero columns",
        solve_err(&s, &v, DMatrix::zeros(2, 0), Solver::cholesky()),
    ));
    let tape = Tape::new();
    let bad = tape.var(ones(3)) * tape.var(ones(2));
    out.push(("elementwise shapes", bad.value().unwrap_err()));
    out.push((
        "backward on a vector",
        tape.backward(tape.var(ones(3))).unwrap_err(),
    ));

    // Indices.
    let asm = Assembly::builder(3, 3, 2).entry(0, 3, 0, 1.0).build();
    out.push(("assembly column out of range", asm.unwrap_err()));
    let asm = Assembly::builder(3, 3, 2)
        .entry(0, 0, 0, 1.0)
        .entry(1, 1, 2, 1.0)
        .build();
    out.push(("assembly parameter out of range", asm.unwrap_err()));
    out.push((
        "gather out of range",
        tape.var(ones(3)).gather(&[0, 3]).value().unwrap_err(),
    ));
    out.push((
        "row index out of range",
        Structure::new(2, 2, vec![0, 1, 2], vec![0, 2], Symmetry::General).unwrap_err(),
    ));

    // Patterns.
    out.push((
        "unsorted rows",
        Structure::new(3, 1, vec![0, 2], vec![2, 0], Symmetry::General).unwrap_err(),
    ));
    out.push((
        "duplicate rows",
        Structure::new(3, 1, vec![0, 2], vec![1, 1], Symmetry::General).unwrap_err(),
    ));
    out.push((
        "upper entry in lower storage",
        Structure::new(2, 2, vec![0, 1, 3], vec![0, 0, 1], Symmetry::Lower).unwrap_err(),
    ));
    out.push((
        "unsymmetric full pattern",
        Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Full).unwrap_err(),
    ));
    out.push((
        "bad col_ptr length",
        Structure::new(2, 2, vec![0, 1], vec![0], Symmetry::General).unwrap_err(),
    ));

    // Non-finite values.
    out.push((
        "NaN in the right-hand side",
        solve_err(
            &s,
            &v,
            DMatrix::from_column_slice(2, 1, &[1.0, f64::NAN]),
            Solver::cholesky(),
        ),
    ));
    let asm = Assembly::builder(2, 2, 1)
        .entry(0, 0, 0, 1.0)
        .entry(1, 1, 0, 1.0)
        .build()
        .unwrap();
    let tape2 = Tape::new();
    let inf = tape2
        .assemble(&asm, tape2.var(DMatrix::from_element(1, 1, f64::INFINITY)))
        .unwrap_err();
    out.push(("infinite parameter", inf));
    out.push((
        "NaN stored value",
        tape2.sparse_var(&s, &[1.0, f64::NAN, 1.0]).unwrap_err(),
    ));

    // Symmetry of values.
    let full = Structure::new(2, 2, vec![0, 2, 4], vec![0, 1, 0, 1], Symmetry::Full).unwrap();
    out.push((
        "unsymmetric values",
        solve_err(&full, &[4.0, 1.0, 1.5, 4.0], ones(2), Solver::cholesky()),
    ));

    // Not positive definite.
    let (s_neg, v_neg) = two_by_two(-0.32, 5.0);
    out.push((
        "negative diagonal",
        solve_err(&s_neg, &v_neg, ones(2), Solver::cholesky()),
    ));
    let (s_ind, v_ind) = two_by_two(1.0, 1.0); // eigenvalues 3 and −1
    out.push((
        "indefinite, fast",
        solve_err(&s_ind, &v_ind, ones(2), Solver::cholesky()),
    ));
    out.push((
        "indefinite, reference",
        solve_err(
            &s_ind,
            &v_ind,
            ones(2),
            Solver::cholesky().with_implementation(Implementation::Reference),
        ),
    ));

    // Singular.
    let (s_sing, v_sing) = two_by_two(2.0, 2.0); // [[2,2],[2,2]]
    out.push((
        "rank-one matrix, LU",
        solve_err(&s_sing, &v_sing, ones(2), Solver::lu()),
    ));
    out.push((
        "rank-one matrix, LDLt",
        solve_err(&s_sing, &v_sing, ones(2), Solver::ldlt()),
    ));
    let g = Structure::new(2, 2, vec![0, 2, 2], vec![0, 1], Symmetry::General).unwrap();
    out.push((
        "empty column, LU",
        solve_err(&g, &[1.0, 1.0], ones(2), Solver::lu()),
    ));

    // Structure mismatches.
    out.push((
        "wrong number of values",
        Solver::cholesky()
            .factorize(&s, &[1.0, 2.0])
            .map(|_| ())
            .unwrap_err(),
    ));
    let tape3 = Tape::new();
    let a1 = tape3.sparse_var(&s, &v).unwrap();
    let a2 = tape3.sparse_var(&full, &[4.0, 1.0, 1.0, 4.0]).unwrap();
    out.push((
        "sparse sum of different patterns",
        (a1 + a2).value().unwrap_err(),
    ));

    // Unsupported combinations.
    out.push((
        "Cholesky on a general structure",
        solve_err(&g, &[1.0, 1.0], ones(2), Solver::cholesky()),
    ));
    out.push((
        "LU on the reference backend",
        solve_err(
            &s,
            &v,
            ones(2),
            Solver::lu().with_implementation(Implementation::Reference),
        ),
    ));
    let other = Tape::new();
    out.push((
        "variable from another tape",
        tape3
            .solve(a1, other.constant(ones(2)), &Solver::cholesky())
            .unwrap_err(),
    ));

    // Iterative solvers.
    let (s_it, v_it) = two_by_two(5.0, 3.0);
    out.push((
        "CG with too few iterations",
        solve_err(
            &s_it,
            &v_it,
            DMatrix::from_column_slice(2, 1, &[1.0, -2.0]),
            sparsegrad::Iterative::cg(1e-14, 1),
        ),
    ));

    let s_diag = Structure::new(2, 2, vec![0, 1, 2], vec![0, 1], Symmetry::Lower).unwrap();
    out.push((
        "CG on an indefinite matrix",
        solve_err(
            &s_diag,
            &[1.0, -1.0],
            ones(2),
            sparsegrad::Iterative::cg(1e-12, 10)
                .with_preconditioner(sparsegrad::Preconditioner::None),
        ),
    ));
    out.push((
        "condition limit exceeded",
        solve_err(
            &s_diag,
            &[1.0, 1e-14],
            ones(2),
            Solver::cholesky().with_condition_limit(1e12),
        ),
    ));
    let s_ldlt = Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Lower).unwrap();
    out.push((
        "LDLT tiny pivot",
        solve_err(&s_ldlt, &[1e-14, 1.0, 1.0], ones(2), Solver::ldlt()),
    ));
    let nan_tape = Tape::new();
    let x = nan_tape.var(ones(2));
    out.push((
        "NaN produced by an operation",
        nan_tape.backward(x.scale(-1.0).ln().sum()).unwrap_err(),
    ));
    out.push((
        "huge scatter length",
        x.scatter_add(&[0, 1], usize::MAX).error().unwrap(),
    ));

    // No GPU: without the `cuda` feature the reason is fixed (tests/gpu.rs covers the feature
    // build, where the reason depends on the machine).
    #[cfg(not(feature = "cuda"))]
    out.push((
        "GPU solve in a build without the cuda feature",
        solve_err(
            &s,
            &v,
            ones(2),
            Solver::cholesky().on(sparsegrad::Device::cuda()),
        ),
    ));

    // Files.
    let missing = sparsegrad::matrix_market::MatrixMarket::read("/nonexistent/sparsegrad/A.mtx");
    out.push(("unreadable file", missing.unwrap_err()));
    let bad = sparsegrad::matrix_market::MatrixMarket::parse(
        "%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1.0\n",
        "A.mtx",
    );
    out.push(("index out of range in a file", bad.unwrap_err()));
    out
}

#[test]
fn every_error_variant_is_reachable_from_bad_input() {
    let errors = all_errors();
    let has = |f: fn(&Error) -> bool| errors.iter().any(|(_, e)| f(e));
    assert!(has(|e| matches!(e, Error::ShapeMismatch { .. })));
    assert!(has(|e| matches!(e, Error::IndexOutOfRange { .. })));
    assert!(has(|e| matches!(e, Error::InvalidPattern { .. })));
    assert!(has(|e| matches!(e, Error::NonFinite { .. })));
    assert!(has(|e| matches!(e, Error::NotSymmetric { .. })));
    assert!(has(|e| matches!(e, Error::NotPositiveDefinite { .. })));
    assert!(has(|e| matches!(e, Error::Singular { .. })));
    assert!(has(|e| matches!(e, Error::StructureMismatch { .. })));
    assert!(has(|e| matches!(e, Error::NotScalar { .. })));
    assert!(has(|e| matches!(e, Error::Unsupported { .. })));
    assert!(has(|e| matches!(e, Error::Io { .. })));
    assert!(has(|e| matches!(e, Error::NotConverged { .. })));
    assert!(has(|e| matches!(e, Error::Format { .. })));
    assert!(has(|e| matches!(e, Error::ForeignVar { .. })));
    assert!(has(|e| matches!(e, Error::Breakdown { .. })));
    assert!(has(|e| matches!(e, Error::IllConditioned { .. })));
    assert!(has(|e| matches!(e, Error::UnstablePivot { .. })));
    assert!(has(|e| matches!(e, Error::NonFiniteOperation { .. })));
    assert!(has(|e| matches!(e, Error::OutOfMemory { .. })));
    #[cfg(not(feature = "cuda"))]
    assert!(has(|e| matches!(e, Error::NoDevice { .. })));
}

#[test]
fn errors_name_the_position() {
    let (s, v) = two_by_two(-0.32, 5.0);
    assert_eq!(
        solve_err(&s, &v, DMatrix::from_element(2, 1, 1.0), Solver::cholesky()),
        Error::NotPositiveDefinite {
            column: 0,
            pivot: Some(-0.32)
        }
    );
    let (s, v) = two_by_two(5.0, 5.0);
    let nan = solve_err(
        &s,
        &v,
        DMatrix::from_column_slice(2, 2, &[1.0, 1.0, 1.0, f64::NAN]),
        Solver::cholesky(),
    );
    assert!(
        matches!(
            nan,
            Error::NonFinite {
                context: "right-hand side",
                row: 1,
                col: 1,
                ..
            }
        ),
        "{nan:?}"
    );
    let (s, v) = two_by_two(1.0, 1.0);
    for solver in [
        Solver::cholesky(),
        Solver::cholesky().with_implementation(Implementation::Reference),
    ] {
        let e = solve_err(&s, &v, DMatrix::from_element(2, 1, 1.0), solver);
        assert!(
            matches!(
                e,
                Error::NotPositiveDefinite {
                    column: 0 | 1,
                    pivot: None
                }
            ),
            "{e:?}"
        );
    }
}

/// Dimensions beyond what any index type can address are an error, not a panic in a backend.
#[test]
fn oversized_dimensions_are_invalid_patterns() {
    for (nrows, ncols) in [(usize::MAX, 1), (isize::MAX as usize + 1, 0)] {
        let e = Structure::new(nrows, ncols, vec![0; ncols + 1], vec![], Symmetry::General)
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidPattern { rule: PatternRule::TooLarge, reason } if reason.contains("largest supported dimension")),
            "{e:?}"
        );
    }
    // The largest allowed row count still builds (an empty column).
    let s = Structure::new(
        isize::MAX as usize,
        1,
        vec![0, 0],
        vec![],
        Symmetry::General,
    )
    .unwrap();
    assert_eq!((s.nrows(), s.nnz()), (isize::MAX as usize, 0));
}

#[test]
fn error_messages() {
    let text: String = all_errors()
        .iter()
        .map(|(what, e)| format!("{what}: {e}\n"))
        .collect();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.bind(|| insta::assert_snapshot!("error_messages", text));
}

/// Every pattern rule is reported as itself, with a message naming where (snapshot).
#[test]
fn pattern_rules_are_matchable() {
    use sparsegrad::PatternRule::*;
    let cases: Vec<(PatternRule, sparsegrad::Result<std::sync::Arc<Structure>>)> = vec![
        (
            TooLarge,
            Structure::new(usize::MAX, 1, vec![0, 0], vec![], Symmetry::General),
        ),
        (
            ColPtrLength,
            Structure::new(2, 2, vec![0, 1], vec![0], Symmetry::General),
        ),
        (
            ColPtrStart,
            Structure::new(2, 2, vec![1, 1, 1], vec![0], Symmetry::General),
        ),
        (
            ColPtrEnd,
            Structure::new(2, 2, vec![0, 1, 1], vec![0, 1], Symmetry::General),
        ),
        (
            ColPtrDecreasing,
            Structure::new(3, 3, vec![0, 2, 1, 2], vec![0, 1], Symmetry::General),
        ),
        (
            NotSquare,
            Structure::new(2, 1, vec![0, 1], vec![0], Symmetry::Lower),
        ),
        (
            UnsortedRows,
            Structure::new(2, 1, vec![0, 2], vec![1, 0], Symmetry::General),
        ),
        (
            DuplicateRows,
            Structure::new(2, 1, vec![0, 2], vec![1, 1], Symmetry::General),
        ),
        (
            AboveDiagonal,
            Structure::new(2, 2, vec![0, 1, 2], vec![0, 0], Symmetry::Lower),
        ),
        (
            NotSymmetric,
            Structure::new(2, 2, vec![0, 2, 3], vec![0, 1, 1], Symmetry::Full),
        ),
    ];
    let mut text = String::new();
    for (rule, result) in cases {
        match result {
            Err(Error::InvalidPattern { rule: got, reason }) => {
                assert_eq!(got, rule, "{reason}");
                text.push_str(&format!("{rule:?}: {reason}\n"));
            }
            other => panic!("{rule:?}: {other:?}"),
        }
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.bind(|| insta::assert_snapshot!("pattern_rules", text));
}
