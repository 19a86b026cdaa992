//! Sparse patterns and the linear map from parameters to matrix values.
//!
//! - [`Structure`]: a validated CSC pattern with a [`Symmetry`] flag and cached symbolic analyses.
//! - [`Assembly`]: values = M p + c, the linear map from a parameter vector to the stored values.
//! - [`Dirichlet`]: elimination of prescribed unknowns from an assembled system.
//!
//! The kernels below apply a stored matrix (A·X, Aᵀ·X) and sort items into groups (the counting
//! sort every pattern builder uses). The gradient kernel at stored entries is
//! `solve::node::accumulate_outer`, part of the solve node.

mod assembly;
mod coloring;
mod dirichlet;
mod structure;

pub use assembly::{Assembly, AssemblyBuilder};
pub use coloring::ColumnColoring;
pub use dirichlet::Dirichlet;
pub use structure::{Structure, Symmetry};

use nalgebra::DMatrix;

/// The permutation sorting items `0..len` by (`major`, `minor`), with `major < n_major`, and
/// where each major bucket starts in it (`n_major + 1` offsets): a counting sort on `major`
/// (O(len + n_major)) followed by a sort of each (short) bucket, the buckets in parallel.
pub(crate) fn bucket_order(
    len: usize,
    n_major: usize,
    major: impl Fn(usize) -> usize,
    minor: impl Fn(usize) -> usize + Sync,
) -> (Vec<usize>, Vec<usize>) {
    use rayon::prelude::*;
    let (start, mut order) = counting_groups(n_major, len, |e| [major(e), NO_GROUP]);
    // Each bucket is sorted on a contiguous copy of its keys (one lookup per item instead of one
    // per comparison); ties keep item order (the key includes the item).
    let mut buckets: Vec<&mut [usize]> = Vec::with_capacity(n_major);
    let mut rest = &mut order[..];
    for b in 0..n_major {
        let (bucket, tail) = std::mem::take(&mut rest).split_at_mut(start[b + 1] - start[b]);
        buckets.push(bucket);
        rest = tail;
    }
    buckets.into_par_iter().with_min_len(1024).for_each_init(
        Vec::new,
        |keyed: &mut Vec<(usize, usize)>, bucket| {
            if bucket.len() > 1 {
                keyed.clear();
                keyed.extend(bucket.iter().map(|&e| (minor(e), e)));
                keyed.sort_unstable();
                for (slot, &(_, e)) in bucket.iter_mut().zip(keyed.iter()) {
                    *slot = e;
                }
            }
        },
    );
    (start, order)
}

/// Splits `0..n` into consecutive ranges of about `grain` of `weight` each (at least one range
/// when n > 0): the units of work of a parallel pass whose outputs are concatenated in order.
pub(crate) fn balanced_ranges(
    n: usize,
    grain: usize,
    weight: impl Fn(usize) -> usize,
) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut begin, mut acc) = (0, 0);
    for k in 0..n {
        acc += weight(k).max(1);
        if acc >= grain {
            ranges.push(begin..k + 1);
            (begin, acc) = (k + 1, 0);
        }
    }
    if begin < n {
        ranges.push(begin..n);
    }
    ranges
}

/// Per-range pieces of a parallel pass — two parallel output vectors and an output count per
/// unit (column, entry) each — joined in range order: the pointer array (prefix sums of the
/// counts, from 0) and the two vectors concatenated, the copies in parallel.
pub(crate) fn join_pieces<A, B>(
    pieces: &[(Vec<A>, Vec<B>, Vec<usize>)],
) -> (Vec<usize>, Vec<A>, Vec<B>)
where
    A: Copy + Default + Send + Sync,
    B: Copy + Default + Send + Sync,
{
    use rayon::prelude::*;
    let units: usize = pieces.iter().map(|p| p.2.len()).sum();
    let mut ptr = Vec::with_capacity(units + 1);
    ptr.push(0usize);
    for (_, _, counts) in pieces {
        for &c in counts {
            ptr.push(ptr[ptr.len() - 1] + c);
        }
    }
    let total = ptr[units];
    let (mut a, mut b) = (vec![A::default(); total], vec![B::default(); total]);
    let mut outputs = Vec::with_capacity(pieces.len());
    let (mut a_rest, mut b_rest) = (&mut a[..], &mut b[..]);
    for (items, _, _) in pieces {
        let (a_part, a_tail) = std::mem::take(&mut a_rest).split_at_mut(items.len());
        let (b_part, b_tail) = std::mem::take(&mut b_rest).split_at_mut(items.len());
        outputs.push((a_part, b_part));
        (a_rest, b_rest) = (a_tail, b_tail);
    }
    pieces
        .par_iter()
        .zip(outputs)
        .for_each(|((from_a, from_b, _), (to_a, to_b))| {
            to_a.copy_from_slice(from_a);
            to_b.copy_from_slice(from_b);
        });
    (ptr, a, b)
}

/// The column of every stored entry of a CSC pattern with column pointers `col_ptr`.
pub(crate) fn entry_columns(col_ptr: &[usize]) -> Vec<usize> {
    let mut col = Vec::with_capacity(col_ptr.last().copied().unwrap_or(0));
    for (j, w) in col_ptr.windows(2).enumerate() {
        col.extend(std::iter::repeat_n(j, w[1] - w[0]));
    }
    col
}

/// The pattern of Aᵀ for an `nrows`-row CSC pattern A, by [`counting_groups`]: its column
/// pointers (`nrows + 1`), its row indices (sorted within each column when A's are), and for each
/// of its entries the index of the same entry in A.
pub(crate) fn transpose_pattern(
    nrows: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (t_ptr, source) = counting_groups(nrows, row_idx.len(), |e| [row_idx[e], NO_GROUP]);
    let col = entry_columns(col_ptr);
    let t_idx = source.iter().map(|&e| col[e]).collect();
    (t_ptr, t_idx, source)
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
