//! The `sparsegrad` command: results against a dense reference and finite differences, and one
//! test per kind of bad input (exit status 2, one line naming file and line, nothing written).

use std::path::{Path, PathBuf};
use std::process::Command;

use nalgebra::DMatrix;
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sparsegrad-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, text: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// 4×4 non-symmetric, with the (3, 2) entry given twice (3.0 + 0.5).
const GENERAL: &str = "%%MatrixMarket matrix coordinate real general
% a comment
4 4 9
1 1 4.0
2 1 1.0
2 2 5.0
3 2 3.0
1 3 -1.0
3 3 6.0
4 3 0.5
4 4 7.0
3 2 0.5
";

const B2: &str = "%%MatrixMarket matrix array real general
4 2
1.0
2.0
0.0
-1.0
0.5
0.0
1.0
3.0
";

fn dense_from(entries: &[(usize, usize, f64)], symmetric: bool) -> DMatrix<f64> {
    let mut a = DMatrix::zeros(4, 4);
    for &(i, j, v) in entries {
        a[(i, j)] += v;
        if symmetric && i != j {
            a[(j, i)] += v;
        }
    }
    a
}

fn entries(text: &str) -> Vec<(usize, usize, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('%'))
        .skip(1)
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (
                t[0].parse::<usize>().unwrap() - 1,
                t[1].parse::<usize>().unwrap() - 1,
                t[2].parse().unwrap(),
            )
        })
        .collect()
}

fn b2() -> DMatrix<f64> {
    DMatrix::from_column_slice(4, 2, &[1.0, 2.0, 0.0, -1.0, 0.5, 0.0, 1.0, 3.0])
}

fn columns(v: &Value) -> DMatrix<f64> {
    let cols = v.as_array().unwrap();
    let n = cols[0].as_array().unwrap().len();
    DMatrix::from_fn(n, cols.len(), |i, c| cols[c][i].as_f64().unwrap())
}

/// L = ‖A⁻¹B‖²: loss, X, Λ and ∂L/∂a_e by the dense textbook adjoint, and by central differences.
fn check_against_dense(text: &str, symmetric: bool, result: &Value) {
    let es = entries(text);
    let loss = |es: &[(usize, usize, f64)]| {
        dense_from(es, symmetric)
            .lu()
            .solve(&b2())
            .unwrap()
            .norm_squared()
    };
    let a = dense_from(&es, symmetric);
    let x = a.clone().lu().solve(&b2()).unwrap();
    let lambda = a.transpose().lu().solve(&(&x * 2.0)).unwrap();
    let a_bar = -&lambda * x.transpose();
    assert!((result["loss"].as_f64().unwrap() - x.norm_squared()).abs() < 1e-12 * x.norm_squared());
    assert!((columns(&result["x"]) - &x).amax() < 1e-12);
    assert!((columns(&result["grad_rhs"]) - &lambda).amax() < 1e-12);
    let grads: Vec<f64> = result["grad_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(grads.len(), es.len());
    // The library's own tape gives the same gradients (one parameter per file entry).
    for (g, t) in grads.iter().zip(&library_gradients(&es, symmetric)) {
        assert!((g - t).abs() < 1e-13 * (1.0 + t.abs()), "{g} vs tape {t}");
    }
    for (e, &(i, j, _)) in es.iter().enumerate() {
        let dense = if symmetric && i != j {
            a_bar[(i, j)] + a_bar[(j, i)]
        } else {
            a_bar[(i, j)]
        };
        assert!(
            (grads[e] - dense).abs() < 1e-12,
            "entry {e}: {} vs {dense}",
            grads[e]
        );
        let h = 1e-6;
        let (mut up, mut down) = (es.clone(), es.clone());
        up[e].2 += h;
        down[e].2 -= h;
        let fd = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!(
            (grads[e] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
            "entry {e}: {} vs fd {fd}",
            grads[e]
        );
    }
}

fn library_gradients(es: &[(usize, usize, f64)], symmetric: bool) -> Vec<f64> {
    use sparsegrad::{Assembly, Solver, Symmetry, Tape};
    let symmetry = if symmetric {
        Symmetry::Lower
    } else {
        Symmetry::General
    };
    let mut b = Assembly::builder(4, 4, es.len()).symmetry(symmetry);
    for (e, &(i, j, _)) in es.iter().enumerate() {
        b.push_entry(i, j, e, 1.0);
    }
    let asm = b.build().unwrap();
    let tape = Tape::new();
    let p = tape.var(DMatrix::from_iterator(es.len(), 1, es.iter().map(|e| e.2)));
    let a = tape.assemble(&asm, p).unwrap();
    let x = tape.solve(a, tape.constant(b2()), &Solver::lu()).unwrap();
    let loss = x.sum_squares();
    tape.backward(loss).unwrap().wrt(p).as_slice().to_vec()
}

#[test]
fn grad_of_a_general_file_with_duplicates() {
    let d = dir("general");
    let (a, b, out) = (
        write(&d, "A.mtx", GENERAL),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        (r["n"].as_u64(), r["nnz"].as_u64(), r["k"].as_u64()),
        (Some(4), Some(9), Some(2))
    );
    assert_eq!(r["method"], "lu");
    check_against_dense(GENERAL, false, &r);
    // Both duplicates of (3, 2) get the gradient of their sum.
    assert_eq!(r["grad_values"][3], r["grad_values"][8]);
    for key in ["read", "analyze", "factor", "solve", "adjoint", "total"] {
        assert!(r["timings_ms"][key].as_f64().unwrap() >= 0.0);
    }
}

const SYMMETRIC: &str = "%%MatrixMarket matrix coordinate real symmetric
4 4 7
1 1 4.0
2 1 1.0
2 2 5.0
3 2 -2.0
3 3 6.0
4 1 0.5
4 4 7.0
";

#[test]
fn grad_of_a_symmetric_file_counts_both_positions() {
    let d = dir("symmetric");
    let (a, b, out) = (
        write(&d, "A.mtx", SYMMETRIC),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["method"], "cholesky");
    check_against_dense(SYMMETRIC, true, &r);
    // The reference backend agrees.
    let out2 = d.join("r2.json").display().to_string();
    assert_eq!(
        run(&[
            "grad",
            "--matrix",
            &a,
            "--rhs",
            &b,
            "--backend",
            "reference",
            "--out",
            &out2
        ])
        .0,
        0
    );
    let r2: Value = serde_json::from_str(&std::fs::read_to_string(&out2).unwrap()).unwrap();
    check_against_dense(SYMMETRIC, true, &r2);
}

#[test]
fn indefinite_symmetric_file_falls_back_to_lu_with_a_warning() {
    let d = dir("indefinite");
    let text = SYMMETRIC.replace("3 3 6.0", "3 3 -6.0");
    let (a, b, out) = (
        write(&d, "A.mtx", &text),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("falling back to LU"),
        "{err}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["method"], "lu");
    check_against_dense(&text, true, &r);
}

#[test]
fn upstream_gradient_and_plain_solve() {
    let d = dir("upstream");
    let (a, b) = (write(&d, "A.mtx", GENERAL), write(&d, "B.mtx", B2));
    // With G = 2X the result equals the sumsq gradient; here G = B itself.
    let g = write(&d, "G.mtx", B2);
    let out = d.join("r.json").display().to_string();
    assert_eq!(
        run(&[
            "grad",
            "--matrix",
            &a,
            "--rhs",
            &b,
            "--upstream",
            &g,
            "--out",
            &out
        ])
        .0,
        0
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(r["loss"].is_null());
    let dense = dense_from(&entries(GENERAL), false);
    let lambda = dense.transpose().lu().solve(&b2()).unwrap();
    assert!((columns(&r["grad_rhs"]) - lambda).amax() < 1e-12);

    let xpath = d.join("X.mtx").display().to_string();
    assert_eq!(
        run(&["solve", "--matrix", &a, "--rhs", &b, "--out", &xpath]).0,
        0
    );
    let x = sparsegrad::matrix_market::MatrixMarket::read(&xpath)
        .unwrap()
        .to_dense()
        .unwrap();
    assert!((x - dense.lu().solve(&b2()).unwrap()).amax() < 1e-14);
}

/// Runs a failing case: exit status 2, one line naming `needle`, no output file.
fn assert_fails(name: &str, a_text: &str, b_text: &str, extra: &[&str], needle: &str) {
    let d = dir(name);
    let (a, b, out) = (
        write(&d, "A.mtx", a_text),
        write(&d, "B.mtx", b_text),
        d.join("r.json").display().to_string(),
    );
    let mut args = vec!["grad", "--matrix", &a, "--rhs", &b, "--out", &out];
    args.extend_from_slice(extra);
    let (code, _, err) = run(&args);
    assert_eq!(code, 2, "{name}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    assert!(
        err.contains(needle),
        "{name}: expected '{needle}' in: {err}"
    );
    assert!(!Path::new(&out).exists(), "{name}: output written on error");
}

#[test]
fn bad_inputs_give_one_line_errors_and_status_two() {
    let d = dir("missing");
    let missing = d.join("nope.mtx").display().to_string();
    let b = write(&d, "B.mtx", B2);
    let (code, _, err) = run(&["grad", "--matrix", &missing, "--rhs", &b, "--out", "x.json"]);
    assert!(
        code == 2 && err.contains("nope.mtx") && err.contains("No such file"),
        "{err}"
    );

    assert_fails(
        "header",
        "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n",
        B2,
        &[],
        "A.mtx:1: unsupported field 'complex'",
    );
    assert_fails(
        "entry",
        &GENERAL.replace("3 3 6.0", "3 3 six"),
        B2,
        &[],
        "A.mtx:9: value 'six' is not a number",
    );
    assert_fails(
        "range",
        &GENERAL.replace("4 4 7.0", "4 5 7.0"),
        B2,
        &[],
        "A.mtx:11: column index 5 out of range 1..=4",
    );
    assert_fails(
        "square",
        "%%MatrixMarket matrix coordinate real general\n4 3 1\n1 1 1.0\n",
        B2,
        &[],
        "not square",
    );
    assert_fails(
        "shape",
        GENERAL,
        "%%MatrixMarket matrix array real general\n3 1\n1\n2\n3\n",
        &[],
        "B.mtx: the right-hand side has 3 rows but A has 4",
    );
    assert_fails(
        "nonfinite",
        &GENERAL.replace("2 2 5.0", "2 2 inf"),
        B2,
        &[],
        "A.mtx:6: non-finite value inf",
    );
    assert_fails(
        "count",
        &GENERAL.replace("4 4 9", "4 4 10"),
        B2,
        &[],
        "9 entries, but the header announces 10",
    );
    let indefinite = SYMMETRIC.replace("3 3 6.0", "3 3 -6.0");
    assert_fails(
        "not-pd",
        &indefinite,
        B2,
        &["--method", "cholesky"],
        "not positive definite: pivot at column 2 is -6e0",
    );
    let singular = "%%MatrixMarket matrix coordinate real general\n4 4 4\n1 1 1.0\n2 2 1.0\n3 3 1.0\n4 3 1.0\n";
    assert_fails(
        "singular",
        singular,
        B2,
        &[],
        "matrix is singular: column 3 has no nonzero entry",
    );
    assert_fails(
        "upper",
        &SYMMETRIC.replace("2 1 1.0", "1 2 1.0"),
        B2,
        &[],
        "A.mtx:4: entry (1, 2) lies above the diagonal",
    );
}

/// A file's header can declare anything; memory and time follow what the file holds, and every
/// such file is one line naming file, line and problem, exit status 2.
#[test]
fn headers_cannot_drive_memory_or_time() {
    let started = std::time::Instant::now();
    let coordinate =
        |size: &str| format!("%%MatrixMarket matrix coordinate real general\n{size}\n1 1 1.0\n");
    assert_fails(
        "huge-count",
        &coordinate("4 4 1000000000000"),
        B2,
        &[],
        "A.mtx:3: 1 entries, but the header announces 1000000000000",
    );
    assert_fails(
        "usize-max",
        &coordinate("4 4 18446744073709551615"),
        B2,
        &[],
        "but the header announces 18446744073709551615",
    );
    assert_fails(
        "array-rhs-huge",
        GENERAL,
        "%%MatrixMarket matrix array real general\n4 1000000000000\n1\n",
        &[],
        "B.mtx:3: 1 entries, but the header announces 4000000000000",
    );
    assert_fails(
        "array-rhs-overflow",
        GENERAL,
        "%%MatrixMarket matrix array real general\n4294967296 4294967297\n1\n",
        &[],
        "B.mtx:2: 4294967296 × 4294967297 entries overflow",
    );
    assert_fails(
        "coordinate-rhs-huge",
        GENERAL,
        "%%MatrixMarket matrix coordinate real general\n4 1000000000000 1\n1 1 1.0\n",
        &[],
        "B.mtx: the right-hand side declares 4 × 1000000000000",
    );
    assert_fails(
        "coordinate-rhs-large",
        GENERAL,
        "%%MatrixMarket matrix coordinate real general\n4 100000000 1\n1 1 1.0\n",
        &[],
        "(write it as an array file)",
    );
    assert!(
        // A runaway (a loop or allocation driven by the declared sizes) takes hours; 120 s keeps
        // this from flaking on a loaded machine.
        started.elapsed().as_secs() < 120,
        "header-driven inputs took {:?}",
        started.elapsed()
    );
}

#[test]
fn malformed_entries_and_lines_are_named() {
    assert_fails(
        "trailing",
        &GENERAL.replace("1 1 4.0", "1 1 4.0 garbage"),
        B2,
        &[],
        "A.mtx:4: unexpected 'garbage' after the entry",
    );
    let integer =
        "%%MatrixMarket matrix coordinate integer general\n4 4 4\n1 1 4\n2 2 -3\n3 3 3.5\n4 4 +2\n";
    assert_fails("integer", integer, B2, &[], "value '3.5' is not an integer");
    // Duplicates that sum to ∞ in B name B's file.
    let b_inf = "%%MatrixMarket matrix coordinate real general\n4 1 2\n1 1 1e308\n1 1 1e308\n";
    assert_fails(
        "rhs-overflow",
        GENERAL,
        b_inf,
        &[],
        "B.mtx: the right-hand side has the non-finite value inf at (row 1, column 1)",
    );
    // A 5 MB header is quoted in at most ~200 characters; control bytes are escaped.
    let long = format!("%%MatrixMarket {}\n1 1 1\n1 1 1\n", "x".repeat(5_000_000));
    let d = dir("long");
    let (a, b, out) = (
        write(&d, "A.mtx", &long),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 2);
    assert!(
        err.len() < 400 && err.contains('…'),
        "{} bytes: {}",
        err.len(),
        &err[..err.len().min(400)]
    );
    let nul = "%%MatrixMarket matrix coordinate real gen\0eral\n1 1 1\n1 1 1\n";
    assert_fails("nul", nul, B2, &[], "unsupported symmetry 'gen\\u{0}eral'");
    // A UTF-8 byte-order mark is accepted.
    let d = dir("bom");
    let (a, b, out) = (
        write(&d, "A.mtx", &format!("\u{feff}{GENERAL}")),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn flags_behave_like_a_standard_parser() {
    let d = dir("flags");
    let (a, b, out) = (
        write(&d, "A.mtx", GENERAL),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let base = [
        "grad",
        "--matrix",
        a.as_str(),
        "--rhs",
        b.as_str(),
        "--out",
        out.as_str(),
    ];
    for (extra, needle) in [
        (&["--verbose"][..], "unexpected argument '--verbose'"),
        (&["extra"][..], "unexpected argument 'extra'"),
        (&["--method"][..], "a value is required for '--method"),
        (&["--method", "qr"][..], "invalid value 'qr' for '--method"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(["grad", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && text.contains("--upstream"),
        "{text}"
    );
}

#[test]
fn ill_conditioned_matrices_get_a_warning_with_the_estimate() {
    let d = dir("illcond");
    let a_text = "%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1.0\n2 1 1.0\n2 2 1.00000000000001\n";
    let b_text = "%%MatrixMarket matrix array real general\n2 1\n1\n2\n";
    let (a, b, out) = (
        write(&d, "A.mtx", a_text),
        write(&d, "B.mtx", b_text),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&[
        "grad", "--matrix", &a, "--rhs", &b, "--out", &out, "--method", "lu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("ill-conditioned"),
        "{err}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // κ₁ of [[1, 1], [1, 1 + 1e-14]] is about 4e14.
    let rcond = r["rcond"].as_f64().unwrap();
    assert!(rcond > 1e-16 && rcond < 1e-13, "{rcond}");
    // A well-conditioned file gets no warning.
    let d = dir("wellcond");
    let (a, b, out) = (
        write(&d, "A.mtx", GENERAL),
        write(&d, "B.mtx", B2),
        d.join("r.json").display().to_string(),
    );
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert!(code == 0 && !err.contains("ill-conditioned"), "{err}");
}

/// Issue 27: the loss overflows (A = [1e-200], b = 1: x = 1e200, ‖x‖² = ∞) — it was written as
/// `"loss": null` with exit 0. Every number written is finite, or the run fails.
#[test]
fn a_loss_or_gradient_that_overflows_is_an_error() {
    assert_fails(
        "overflow",
        "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1e-200\n",
        "%%MatrixMarket matrix array real general\n1 1\n1\n",
        &["--loss", "half-sumsq", "--method", "lu"],
        "beyond the floating-point range",
    );
    // ‖X‖² = 1e310 overflows while X = 1e155, Λ = 2X/1e10 and Ā = −ΛX = −2e300 stay finite.
    assert_fails(
        "overflow-loss",
        "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1e10\n",
        "%%MatrixMarket matrix array real general\n1 1\n1e165\n",
        &[],
        "loss overflowed",
    );
    // With loss = sum the loss is finite (1e200) but ∂L/∂A = −1e400 overflows.
    assert_fails(
        "overflow-gradient",
        "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1e-200\n",
        "%%MatrixMarket matrix array real general\n1 1\n1\n",
        &["--loss", "sum"],
        "gradient of A overflowed",
    );
}

/// Issue 27: a numerically singular matrix (rank 2) solved by LU gave X ≈ 4.5e15, written with
/// exit 0.
#[test]
fn a_numerically_singular_matrix_writes_no_solution() {
    let a = "%%MatrixMarket matrix coordinate real general\n3 3 9\n1 1 1\n1 2 2\n1 3 3\n2 1 4\n2 2 5\n2 3 6\n3 1 5\n3 2 7\n3 3 9\n";
    let b = "%%MatrixMarket matrix array real general\n3 1\n1\n1\n1\n";
    assert_fails("rank2", a, b, &["--method", "lu"], "singular");
    assert_fails("rank2-auto", a, b, &[], "singular");
}

/// Issue 27: `--matrix /dev/zero` read 6.5 GB; inputs are bounded by `--max-input-mib`, regular
/// files before they are read, streams as they are read.
#[test]
fn inputs_larger_than_the_limit_are_refused() {
    let d = dir("limit");
    let b = write(&d, "B.mtx", B2);
    let out = d.join("x.mtx").display().to_string();
    // A regular file of ~1.5 MiB against a 1 MiB limit is refused by its size, before reading.
    let mut big = String::from(GENERAL);
    while big.len() < 3 << 19 {
        big.push_str("% padding comment line to make the file large\n");
    }
    let a = write(&d, "big.mtx", &big);
    for (matrix, needle) in [("/dev/zero", "it holds"), (a.as_str(), "the file has")] {
        let (code, _, err) = run(&[
            "solve",
            "--matrix",
            matrix,
            "--rhs",
            &b,
            "--out",
            &out,
            "--max-input-mib",
            "1",
        ]);
        assert!(
            code == 2 && err.contains(needle) && err.contains("--max-input-mib"),
            "{matrix}: {err}"
        );
    }
    // The same file within the default limit solves.
    let (code, _, err) = run(&["solve", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
}

/// Issue 27: `--out` naming an input (directly or through a link) replaced the input matrix
/// with X. Refused, the input unchanged.
#[test]
fn the_output_may_not_be_an_input() {
    let d = dir("out-is-input");
    let (a, b) = (write(&d, "A.mtx", GENERAL), write(&d, "B.mtx", B2));
    for out in [a.clone(), b.clone()] {
        let (code, _, err) = run(&["solve", "--matrix", &a, "--rhs", &b, "--out", &out]);
        assert!(code == 2 && err.contains("input"), "{err}");
    }
    #[cfg(unix)]
    {
        let link = d.join("link.mtx");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let link = link.display().to_string();
        let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &link]);
        assert!(code == 2 && err.contains("refusing"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&a).unwrap(), GENERAL);
    assert_eq!(std::fs::read_to_string(&b).unwrap(), B2);
}

/// Issue 27: outputs were written in place (a truncated file on a full disk) and a failed run
/// left an older output in place. Now: renamed into place when complete, no temporary file left,
/// and a failed run removes the stale output it could be mistaken for.
#[test]
fn outputs_are_replaced_whole_or_removed() {
    let d = dir("atomic");
    let (a, b) = (write(&d, "A.mtx", GENERAL), write(&d, "B.mtx", B2));
    let out = d.join("X.mtx");
    let out_s = out.display().to_string();
    std::fs::write(&out, "stale").unwrap();
    let (code, _, err) = run(&["solve", "--matrix", &a, "--rhs", &b, "--out", &out_s]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.starts_with("%%MatrixMarket matrix array real general\n4 2\n"));
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A failed run (B with the wrong number of rows) removes the older X.
    let bad_b = write(
        &d,
        "B3.mtx",
        "%%MatrixMarket matrix array real general\n3 1\n1\n2\n3\n",
    );
    let (code, _, err) = run(&["solve", "--matrix", &a, "--rhs", &bad_b, "--out", &out_s]);
    assert!(code == 2 && err.contains("removed the older"), "{err}");
    assert!(!out.exists());
    // Writing into a directory that does not exist fails cleanly.
    let nowhere = d.join("no-such-dir").join("X.mtx").display().to_string();
    let (code, _, err) = run(&["solve", "--matrix", &a, "--rhs", &b, "--out", &nowhere]);
    assert!(code == 2 && err.contains("no-such-dir"), "{err}");
}

/// Issue 27: "about 17 of 16 digits lost": the warning is capped.
#[test]
fn the_digits_lost_warning_is_capped() {
    let d = dir("digits");
    let a = write(
        &d,
        "A.mtx",
        "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1e-17\n2 2 1\n",
    );
    let b = write(
        &d,
        "B.mtx",
        "%%MatrixMarket matrix array real general\n2 1\n1e-17\n1\n",
    );
    let out = d.join("r.json").display().to_string();
    let (code, _, err) = run(&["grad", "--matrix", &a, "--rhs", &b, "--out", &out]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("all 16 digits") && !err.contains("17 of 16"),
        "{err}"
    );
}

/// `--precision`: mixed gives the double-precision results (the same dense and tape checks)
/// and reports its refinement steps; single is within 1e-5 and says so; auto on a small matrix
/// runs double; LU refuses a reduced precision; an indefinite file under `--method auto
/// --precision mixed` falls back to LU in f64 with a warning.
#[test]
fn precision_flag_runs_and_reports_the_arithmetic() {
    let d = dir("precision");
    let (a, b) = (write(&d, "A.mtx", SYMMETRIC), write(&d, "B.mtx", B2));
    let grad = |precision: &str, extra: &[&str]| {
        let out = d.join(format!("{precision}.json")).display().to_string();
        let mut args = vec![
            "grad",
            "--matrix",
            &a,
            "--rhs",
            &b,
            "--precision",
            precision,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = run(&args);
        let r: Option<Value> = std::fs::read_to_string(&out)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap());
        (code, err, r)
    };
    let (code, err, r) = grad("mixed", &[]);
    assert_eq!(code, 0, "{err}");
    let r = r.unwrap();
    assert_eq!(
        (&r["method"], &r["precision"]),
        (&"cholesky".into(), &"mixed".into())
    );
    check_against_dense(SYMMETRIC, true, &r);
    for pass in ["solve", "adjoint"] {
        let steps = r["refinement_steps"][pass].as_u64().unwrap();
        assert!((1..=4).contains(&steps), "{pass}: {steps} steps");
    }
    let (code, err, single) = grad("single", &[]);
    assert_eq!(code, 0, "{err}");
    let single = single.unwrap();
    assert_eq!(single["precision"], "single");
    assert_eq!(single["refinement_steps"], Value::Null);
    let (l32, l64) = (
        single["loss"].as_f64().unwrap(),
        r["loss"].as_f64().unwrap(),
    );
    assert!(
        (l32 - l64).abs() <= 1e-5 * l64 && l32 != l64,
        "{l32} vs {l64}"
    );
    let (code, err, auto) = grad("auto", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(auto.unwrap()["precision"], "double");
    let (code, err, none) = grad("mixed", &["--method", "lu"]);
    assert_eq!((code, none.is_none()), (2, true), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("precision"),
        "{err}"
    );

    let text = SYMMETRIC.replace("3 3 6.0", "3 3 -6.0");
    let a = write(&d, "indefinite.mtx", &text);
    let out = d.join("indefinite.json").display().to_string();
    let (code, _, err) = run(&[
        "grad",
        "--matrix",
        &a,
        "--rhs",
        &b,
        "--precision",
        "mixed",
        "--out",
        &out,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("falling back to LU in f64"), "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        (&r["method"], &r["precision"]),
        (&"lu".into(), &"double".into())
    );
    check_against_dense(&text, true, &r);
}
