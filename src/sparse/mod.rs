//! Sparse patterns and the linear map from parameters to matrix values.
//!
//! - [`Structure`]: a validated CSC pattern with a [`Symmetry`] flag and cached symbolic analyses.
//! - [`Assembly`]: values = M p + c, the linear map from a parameter vector to the stored values.
//! - [`Dirichlet`]: elimination of prescribed unknowns from an assembled system.
//!
//! The kernels below apply a stored matrix and accumulate the "outer product at stored entries"
//! that every sparse adjoint in the crate reduces to.

mod assembly;
mod dirichlet;
mod structure;

pub use assembly::{Assembly, AssemblyBuilder};
pub use dirichlet::Dirichlet;
pub use structure::{Structure, Symmetry};

use nalgebra::DMatrix;

use crate::error::{Error, Result};

/// The permutation sorting items `0..len` by (`major`, `minor`), with `major < n_major`: a
/// counting sort on `major` (O(len + n_major)) followed by a sort of each (short) bucket.
pub(crate) fn bucket_order(
    len: usize,
    n_major: usize,
    major: impl Fn(usize) -> usize,
    minor: impl Fn(usize) -> usize,
) -> Vec<usize> {
    let (start, mut order) = counting_groups(n_major, len, |e| [major(e), NO_GROUP]);
    for b in 0..n_major {
        order[start[b]..start[b + 1]].sort_unstable_by_key(|&e| minor(e));
    }
    order
}

/// "No group" in [`counting_groups`]' keys.
pub(crate) const NO_GROUP: usize = usize::MAX;

/// Counting sort of the items `0..len` into `n` groups: `groups(e)` names the (up to two) groups
/// item e belongs to, [`NO_GROUP`] for none. Returns the group pointers (`n + 1`) and the items,
/// in item order within each group.
pub(crate) fn counting_groups(
    n: usize,
    len: usize,
    groups: impl Fn(usize) -> [usize; 2],
) -> (Vec<usize>, Vec<usize>) {
    let mut ptr = vec![0usize; n + 1];
    for e in 0..len {
        for g in groups(e) {
            if g != NO_GROUP {
                ptr[g + 1] += 1;
            }
        }
    }
    for g in 0..n {
        ptr[g + 1] += ptr[g];
    }
    let mut next = ptr[..n].to_vec();
    let mut items = vec![0usize; ptr[n]];
    for e in 0..len {
        for g in groups(e) {
            if g != NO_GROUP {
                items[next[g]] = e;
                next[g] += 1;
            }
        }
    }
    (ptr, items)
}

/// Y = A X for a stored matrix (`values` in `structure` order), honouring one-triangle storage.
pub(crate) fn mul_dense(structure: &Structure, values: &[f64], x: &DMatrix<f64>) -> DMatrix<f64> {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let (n_out, n_in) = (structure.nrows(), structure.ncols());
    let mut y = DMatrix::zeros(n_out, x.ncols());
    for (xc, yc) in x
        .as_slice()
        .chunks_exact(n_in.max(1))
        .zip(y.as_mut_slice().chunks_exact_mut(n_out.max(1)))
    {
        for j in 0..n_in {
            let xj = xc[j];
            let mut acc = 0.0;
            for (&i, &v) in ri[cp[j]..cp[j + 1]].iter().zip(&values[cp[j]..cp[j + 1]]) {
                yc[i] += v * xj;
                if lower && i != j {
                    acc += v * xc[i];
                }
            }
            // The mirror term exists only for one-triangle (square) storage.
            if lower {
                yc[j] += acc;
            }
        }
    }
    y
}

/// Y = Aᵀ X for a stored matrix, honouring one-triangle storage.
pub(crate) fn mul_transpose_dense(
    structure: &Structure,
    values: &[f64],
    x: &DMatrix<f64>,
) -> DMatrix<f64> {
    if structure.symmetry() == Symmetry::Lower {
        return mul_dense(structure, values, x);
    }
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let (n_in, n_out) = (structure.nrows(), structure.ncols());
    let mut y = DMatrix::zeros(n_out, x.ncols());
    for (xc, yc) in x
        .as_slice()
        .chunks_exact(n_in.max(1))
        .zip(y.as_mut_slice().chunks_exact_mut(n_out.max(1)))
    {
        for (j, yj) in yc.iter_mut().enumerate() {
            *yj = ri[cp[j]..cp[j + 1]]
                .iter()
                .zip(&values[cp[j]..cp[j + 1]])
                .map(|(&i, &v)| v * xc[i])
                .sum();
        }
    }
    y
}

/// out_k += scale · Σ_c left[i, c] · right[j, c] for every stored entry k = (i, j).
///
/// With left = Λ = A⁻ᵀ Ḡ, right = X and scale = −1 this is the gradient of a solve with respect to
/// the stored values of A (what the solve node's backward pass computes).
///
/// This is the derivative of ⟨left, A right⟩ with respect to the stored values. For one-triangle
/// storage an off-diagonal value stands for (i, j) and (j, i), so both terms are added:
/// scale · Σ_c (left[i, c] right[j, c] + left[j, c] right[i, c]). Columns are visited four at a
/// time (one pass over the pattern per four columns, each access within a contiguous column),
/// then one at a time for the rest; each entry's additions happen in column order either way, so
/// the result does not depend on the blocking.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `left` is nrows×k, `right` ncols×k (the same k) and `out` has
/// one entry per stored entry; for one-triangle storage the structure is square.
pub fn accumulate_outer(
    structure: &Structure,
    left: &DMatrix<f64>,
    right: &DMatrix<f64>,
    scale: f64,
    out: &mut [f64],
) -> Result<()> {
    let shape = (structure.nrows(), structure.ncols());
    let mismatch = |left, right| {
        Err(Error::ShapeMismatch {
            op: "accumulate_outer",
            left,
            right,
        })
    };
    if left.nrows() != shape.0 || right.nrows() != shape.1 || left.ncols() != right.ncols() {
        return mismatch(left.shape(), right.shape());
    }
    if out.len() != structure.nnz() {
        return mismatch((out.len(), 1), (structure.nnz(), 1));
    }
    accumulate_outer_unchecked(structure, left, right, scale, out);
    Ok(())
}

/// [`accumulate_outer`] with shapes already checked by the caller.
fn accumulate_outer_unchecked(
    structure: &Structure,
    left: &DMatrix<f64>,
    right: &DMatrix<f64>,
    scale: f64,
    out: &mut [f64],
) {
    let lower = structure.symmetry() == Symmetry::Lower;
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let (nl, nr) = (left.nrows().max(1), right.nrows().max(1));
    let (l4, r4) = (
        left.as_slice().chunks_exact(4 * nl),
        right.as_slice().chunks_exact(4 * nr),
    );
    let (l_rest, r_rest) = (l4.remainder(), r4.remainder());
    for (lb, rb) in l4.zip(r4) {
        let l: [&[f64]; 4] = std::array::from_fn(|c| &lb[c * nl..(c + 1) * nl]);
        let r: [&[f64]; 4] = std::array::from_fn(|c| &rb[c * nr..(c + 1) * nr]);
        for j in 0..structure.ncols() {
            let range = cp[j]..cp[j + 1];
            for (o, &i) in out[range.clone()].iter_mut().zip(&ri[range]) {
                // Same additions in the same order as one column at a time.
                let mut acc = *o;
                for c in 0..4 {
                    let mut v = l[c][i] * r[c][j];
                    if lower && i != j {
                        v += l[c][j] * r[c][i];
                    }
                    acc += scale * v;
                }
                *o = acc;
            }
        }
    }
    for (lc, rc) in l_rest.chunks_exact(nl).zip(r_rest.chunks_exact(nr)) {
        for j in 0..structure.ncols() {
            let (rj, lj) = (rc[j], if lower { lc[j] } else { 0.0 });
            let range = cp[j]..cp[j + 1];
            for (o, &i) in out[range.clone()].iter_mut().zip(&ri[range]) {
                let mut v = lc[i] * rj;
                if lower && i != j {
                    v += lj * rc[i];
                }
                *o += scale * v;
            }
        }
    }
}
