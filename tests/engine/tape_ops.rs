//! Every tape operation's vector-Jacobian product against central differences, and the tape's
//! bookkeeping (constants get no gradient, poisoned nodes report their error).

use nalgebra::DMatrix;
use sparsegrad::{check, Error, Structure, Symmetry, Tape};

fn x0() -> DMatrix<f64> {
    DMatrix::from_column_slice(6, 1, &[0.3, 1.2, 0.7, 2.1, 0.9, 1.6])
}

fn assert_fd(
    f: impl for<'t> Fn(&'t Tape, sparsegrad::Var<'t>) -> sparsegrad::Result<sparsegrad::Var<'t>>,
) {
    let r = check::gradient(f, x0(), &check::Options::default()).unwrap();
    assert!(r.max_relative_error < 1e-7, "{r:?}");
    assert!(r.gradient.amax() > 0.0);
}

#[test]
fn unary_ops() {
    assert_fd(|_, x| Ok(x.exp().sum()));
    assert_fd(|_, x| Ok(x.ln().sum()));
    assert_fd(|_, x| Ok(x.sqrt().sum()));
    assert_fd(|_, x| Ok(x.powf(2.5).sum()));
    assert_fd(|_, x| Ok(x.square().sum()));
    assert_fd(|_, x| Ok((x * 0.5 - 1.0).sum_squares()));
    assert_fd(|_, x| Ok((x * 3.0 - 2.0).sigmoid().sum()));
    assert_fd(|_, x| Ok((x * 40.0 - 30.0).softplus().sum()));
    assert_fd(|_, x| Ok((-x).exp().sum() + (x / 2.0).sum()));
    assert_fd(|_, x| Ok((x * 2.0).sin().sum() + (x * 3.0).cos().sum()));
}

#[test]
fn softplus_and_sigmoid_are_stable_for_large_arguments() {
    let tape = Tape::new();
    let x = tape.var(DMatrix::from_column_slice(2, 1, &[800.0, -800.0]));
    assert_eq!(x.softplus().value().unwrap().as_slice(), &[800.0, 0.0]);
    assert_eq!(x.sigmoid().value().unwrap().as_slice(), &[1.0, 0.0]);
}

#[test]
fn binary_ops_with_broadcasting() {
    assert_fd(|_, x| {
        let (a, b) = (x.gather(&[0, 1, 2]), x.gather(&[3, 4, 5]));
        let s = x.gather(&[4]); // 1×1, broadcast
        Ok((a * b + a / b - s * a + b / s - s).sum())
    });
    assert_fd(|_, x| {
        let s = x.gather(&[1]);
        Ok((2.0 / x + 1.0 - x).dot(x * s))
    });
}

/// An n×1 column against n×k repeats across the columns and a 1×k row repeats down the rows
/// (values checked entry by entry); other shape pairs are still mismatches.
#[test]
fn column_and_row_broadcasting() {
    let tape = Tape::new();
    let m = tape.var(DMatrix::from_row_slice(
        2,
        3,
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    ));
    let col = tape.var([10.0, 20.0]);
    let row = tape.var(DMatrix::from_row_slice(1, 3, &[1.0, 0.5, 0.25]));
    let centred = m - col;
    assert_eq!(
        centred.value().unwrap(),
        DMatrix::from_row_slice(2, 3, &[-9.0, -8.0, -7.0, -16.0, -15.0, -14.0])
    );
    let scaled = row * m;
    assert_eq!(
        scaled.value().unwrap(),
        DMatrix::from_row_slice(2, 3, &[1.0, 1.0, 0.75, 4.0, 2.5, 1.5])
    );
    // d/dcol Σ (m − col)² = −2 Σ_j (m_ij − col_i); d/drow Σ row ⊙ m = Σ_i m_ij.
    let g = tape.backward(centred.sum_squares() + scaled.sum()).unwrap();
    assert_eq!(g.wrt(col).as_slice(), &[48.0, 90.0]);
    assert_eq!(g.wrt(row).as_slice(), &[5.0, 7.0, 9.0]);
    for bad in [
        tape.var([1.0, 2.0, 3.0]) + m,
        tape.var(DMatrix::from_row_slice(1, 2, &[1.0, 2.0])) * m,
        tape.var([1.0, 2.0]) + row,
    ] {
        assert!(
            matches!(bad.error(), Some(Error::ShapeMismatch { .. })),
            "{:?}",
            bad.error()
        );
    }
    assert_fd(|t, x| {
        let m = x.gather(&[0, 1, 2, 3, 4, 5]);
        let c = x.gather(&[1, 3, 5, 0, 2, 4]);
        let both = t.concat_columns(&[m, c]);
        Ok((both / x.gather(&[2, 3, 4, 5, 0, 1]).exp()).square().sum())
    });
}

#[test]
fn gather_scatter_slice_concat() {
    assert_fd(|t, x| {
        let g = x.gather(&[5, 0, 0, 3]);
        let s = g.scatter_add(&[1, 1, 0, 2], 3);
        let m = t.concat_columns(&[s, x.gather(&[2, 3, 4]), s.square()]);
        let c = m.columns(1, 2);
        Ok(c.square().sum() + m.columns(0, 1).exp().sum())
    });
}

#[test]
fn sparse_matrix_product_differentiates_both_arguments() {
    // A 3×3 general pattern whose values are x[0..4], times the vector x[3..6].
    let s = Structure::new(3, 3, vec![0, 2, 3, 4], vec![0, 2, 1, 0], Symmetry::General).unwrap();
    assert_fd(|t, x| {
        let a = t.with_structure(x.gather(&[0, 1, 2, 3]), &s);
        let y = t.spmul(a, x.gather(&[3, 4, 5]))?;
        Ok(y.square().sum())
    });
    // One-triangle storage: values stand for both positions.
    let lower = Structure::new(3, 3, vec![0, 2, 3, 4], vec![0, 2, 1, 2], Symmetry::Lower).unwrap();
    assert_fd(|t, x| {
        let a = t.with_structure(x.gather(&[0, 1, 2, 3]), &lower);
        let y = a.spmul(x.gather(&[3, 4, 5]))?;
        Ok(y.dot(x.gather(&[0, 2, 4])))
    });
}

#[test]
fn lower_storage_product_matches_dense() {
    let lower = Structure::new(3, 3, vec![0, 2, 3, 4], vec![0, 2, 1, 2], Symmetry::Lower).unwrap();
    let tape = Tape::new();
    let a = tape.sparse_constant(&lower, &[2.0, 5.0, 3.0, 7.0]).unwrap();
    let y = a
        .spmul(tape.constant(DMatrix::from_column_slice(3, 1, &[1.0, 10.0, 100.0])))
        .unwrap();
    // [[2,0,5],[0,3,0],[5,0,7]] · [1,10,100]
    assert_eq!(y.value().unwrap().as_slice(), &[502.0, 30.0, 705.0]);
}

#[test]
fn constants_get_zero_gradient_and_reuse_accumulates() {
    let tape = Tape::new();
    let x = tape.var_scalar(3.0);
    let c = tape.constant_scalar(2.0);
    let y = x * x * c + x; // dy/dx = 4x + 1 = 13
    let g = tape.backward(y).unwrap();
    assert_eq!(g.wrt(x)[(0, 0)], 13.0);
    assert_eq!(g.wrt(c)[(0, 0)], 0.0);
}

#[test]
fn backward_on_a_vector_is_an_error() {
    let tape = Tape::new();
    let x = tape.var(DMatrix::from_element(3, 2, 1.0));
    assert_eq!(
        tape.backward(x.exp()).err(),
        Some(Error::NotScalar { rows: 3, cols: 2 })
    );
}

#[test]
fn shape_errors_poison_downstream_nodes() {
    let tape = Tape::new();
    let a = tape.var(DMatrix::from_element(3, 1, 1.0));
    let b = tape.var(DMatrix::from_element(2, 1, 1.0));
    let bad = a + b;
    let loss = bad.exp().sum();
    let expected = Error::ShapeMismatch {
        op: "add",
        left: (3, 1),
        right: (2, 1),
    };
    assert_eq!(loss.value().err(), Some(expected.clone()));
    assert_eq!(tape.backward(loss).err(), Some(expected));
    // Unrelated branches are unaffected.
    assert_eq!(a.sum().scalar().unwrap(), 3.0);
}

/// `accumulate_outer` (the solve and spmul adjoint kernel) visits columns in blocks of four; its
/// result must equal, bit for bit, the plain definition summed one column at a time, for every
/// column count around the block size and for one-triangle and general storage.
#[test]
fn accumulate_outer_blocks_equal_the_column_by_column_definition() {
    use sparsegrad::solve::node::accumulate_outer;
    use sparsegrad::{Structure, Symmetry};
    let n = 9;
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|j| {
            (j..n)
                .filter(move |i| (i * 7 + j * 3) % 4 != 1 || *i == j)
                .map(move |i| (i, j))
        })
        .collect();
    for symmetry in [Symmetry::Lower, Symmetry::General] {
        let (s, _) = Structure::from_pairs(n, n, &pairs, symmetry).unwrap();
        let lower = symmetry == Symmetry::Lower;
        for k in [1, 3, 4, 5, 8, 11] {
            let left = DMatrix::from_fn(n, k, |i, c| ((i * 13 + c * 5) % 17) as f64 / 7.0 - 1.1);
            let right = DMatrix::from_fn(n, k, |i, c| ((i * 3 + c * 11) % 19) as f64 / 3.0 + 0.3);
            let start: Vec<f64> = (0..s.nnz()).map(|e| e as f64 * 0.01).collect();
            let mut got = start.clone();
            accumulate_outer(&s, &left, &right, -0.7, &mut got).unwrap();
            let mut want = start;
            let cols = s.col_idx();
            for c in 0..k {
                for ((w, &i), &j) in want.iter_mut().zip(s.row_idx()).zip(&cols) {
                    let mut v = left[(i, c)] * right[(j, c)];
                    if lower && i != j {
                        v += left[(j, c)] * right[(i, c)];
                    }
                    *w += -0.7 * v;
                }
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{symmetry:?}, k = {k}");
        }
    }
}
