//! Solves with a multifrontal factor over the same cut tree: forward substitution bottom-up (each
//! front passes a contribution vector to its parent), backward substitution top-down (each front
//! reads its pattern rows from its parent's front values); one column runs each cut subtree over
//! one work vector, several columns go front by front.
//!
//! Contract: `x` is n × k in the permuted order of the factor; workspace is O(n·k) plus one front
//! per task. Infallible once the factor exists.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, Par};

use super::*;

/// One supernode of a one-column forward substitution: `values` its columns of L (diagonal
/// block on top, then the pattern rows), `top` its rows of the right-hand side (solved in place),
/// `below` receives −L_B y for its pattern rows. One axpy per column of L: the solve is
/// memory-bound, and most supernodes are too small for the dense kernels' dispatch to pay.
pub(super) fn forward_columns<S: Real>(values: &[S], top: &mut [S], below: &mut [S]) {
    let width = top.len();
    for (c, column) in values.chunks_exact(width + below.len()).enumerate() {
        let y = top[c] / column[c];
        top[c] = y;
        axpy(&mut top[c + 1..], S::default() - y, &column[c + 1..width]);
        axpy(below, S::default() - y, &column[width..]);
    }
}

/// One supernode of a one-column backward substitution: x_s = L_ssᵀ⁻¹ (y_s − L_Bᵀ x_B) in place in
/// `top`, `below` holding x at its pattern rows; one dot product per column of L.
pub(super) fn backward_columns<S: Real>(values: &[S], top: &mut [S], below: &[S]) {
    let width = top.len();
    for (c, column) in values.chunks_exact(width + below.len()).enumerate().rev() {
        let s = dot(&column[c + 1..width], &top[c + 1..]) + dot(&column[width..], below);
        top[c] = (top[c] - s) / column[c];
    }
}

impl Plan {
    /// Solves L Lᵀ X = B for the factor `l_values` (from [`Plan::factor`]), `x` holding B in
    /// elimination order, blocked by supernode: supernode s's rows are the column-major
    /// `width × k` block at `begin[s]·k`. Forward and backward substitution run over the same
    /// cut tree as the factorization, independent subtrees in parallel; the result does not
    /// depend on the thread count.
    pub(super) fn solve_blocked<S: Real>(&self, l_values: &[S], x: &mut [S], k: usize) {
        let forward = |sn: usize, block: &mut [S], children: Vec<Vec<S>>, _| {
            Ok::<_, std::convert::Infallible>(self.forward_front(sn, l_values, k, block, children))
        };
        let backward = |sn: usize, block: &mut [S], parent: Option<&[S]>| {
            self.backward_front(sn, l_values, k, block, parent)
        };
        let ptr: Vec<usize> = self.begin.iter().map(|&b| b * k).collect();
        if k == 1 {
            // One column: each cut subtree runs over one work vector, no per-supernode buffers.
            let Ok(()) = self.upward(
                split_blocks(x, &ptr),
                &forward,
                Some(&|t, blocks| Ok(self.forward_subtree(t, l_values, blocks))),
            );
            self.downward(
                split_blocks(x, &ptr),
                &backward,
                Some(&|t, blocks, parent| self.backward_subtree(t, l_values, blocks, parent)),
            );
            return;
        }
        let Ok(()) = self.upward(split_blocks(x, &ptr), &forward, None);
        self.downward(split_blocks(x, &ptr), &backward, None);
    }

    /// A cut subtree's work vector: its supernodes' rows (`blocks`, in its postorder), then
    /// `extra` zeros for its root's pattern rows.
    pub(super) fn gather<S: Real>(blocks: &[&mut [S]], extra: usize) -> Vec<S> {
        let len: usize = blocks.iter().map(|b| b.len()).sum();
        let mut work = Vec::with_capacity(len + extra);
        for b in blocks {
            work.extend_from_slice(b);
        }
        work.resize(len + extra, S::default());
        work
    }

    /// Copies a cut subtree's rows from `work` back to its blocks.
    pub(super) fn scatter<S: Real>(work: &[S], blocks: Vec<&mut [S]>) {
        let mut at = 0;
        for b in blocks {
            b.copy_from_slice(&work[at..at + b.len()]);
            at += b.len();
        }
    }

    /// Forward substitution over cut subtree `t` for one column (`blocks`: its supernodes' rows
    /// in its postorder); returns the contribution to its root's pattern rows.
    pub(super) fn forward_subtree<S: Real>(
        &self,
        t: usize,
        l_values: &[S],
        blocks: Vec<&mut [S]>,
    ) -> Vec<S> {
        let nodes = self.subtree(t);
        let root = nodes[nodes.len() - 1];
        let mut work = Self::gather(&blocks, self.below(root));
        let len = work.len() - self.below(root);
        let mut below_part = Vec::new();
        let mut b0 = 0;
        for &sn in nodes {
            let width = self.width(sn);
            let b1 = b0 + width;
            let anchor = &self.anchor[self.row_ptr[sn]..self.row_ptr[sn + 1]];
            below_part.clear();
            below_part.resize(anchor.len(), S::default());
            let values = &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]];
            forward_columns(values, &mut work[b0..b1], &mut below_part);
            for (&a, &v) in anchor.iter().zip(&below_part) {
                work[a as usize] += v;
            }
            b0 = b1;
        }
        let contribution = work.split_off(len);
        Self::scatter(&work, blocks);
        contribution
    }

    /// Backward substitution over cut subtree `t` for one column (`blocks`: its supernodes'
    /// forward results in its postorder; `parent`: its root's parent's front values).
    pub(super) fn backward_subtree<S: Real>(
        &self,
        t: usize,
        l_values: &[S],
        blocks: Vec<&mut [S]>,
        parent: Option<&[S]>,
    ) {
        let nodes = self.subtree(t);
        let root = nodes[nodes.len() - 1];
        let mut work = Self::gather(&blocks, self.below(root));
        let len = work.len() - self.below(root);
        if let (Some(front), Some(_)) = (parent, self.parent[root]) {
            let rel = &self.relative[self.row_ptr[root]..self.row_ptr[root + 1]];
            for (dst, &lr) in work[len..].iter_mut().zip(rel) {
                *dst = front[lr as usize];
            }
        }
        let mut below_part = Vec::new();
        let mut b1 = len;
        for &sn in nodes.iter().rev() {
            let width = self.width(sn);
            let b0 = b1 - width;
            let anchor = &self.anchor[self.row_ptr[sn]..self.row_ptr[sn + 1]];
            below_part.clear();
            below_part.extend(anchor.iter().map(|&a| work[a as usize]));
            let values = &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]];
            backward_columns(values, &mut work[b0..b1], &below_part);
            b1 = b0;
        }
        Self::scatter(&work[..len], blocks);
    }

    /// Solves L Lᵀ X = B in place for `rhs` (n × k, original order); `permutation` is the
    /// analysis's (new → old).
    pub(crate) fn solve_in_place<S: Real>(
        &self,
        l_values: &[S],
        permutation: Option<&[usize]>,
        mut rhs: faer::MatMut<'_, S>,
    ) {
        let n = self.begin.last().copied().unwrap_or(0);
        let k = rhs.ncols();
        let old = |r: usize| permutation.map_or(r, |p| p[r]);
        let mut x = S::zeroed(n * k);
        for sn in 0..self.begin.len() - 1 {
            let (f, l) = (self.begin[sn], self.begin[sn + 1]);
            let block = &mut x[f * k..l * k];
            for c in 0..k {
                for r in f..l {
                    block[c * (l - f) + r - f] = rhs[(old(r), c)];
                }
            }
        }
        self.solve_blocked(l_values, &mut x, k);
        for sn in 0..self.begin.len() - 1 {
            let (f, l) = (self.begin[sn], self.begin[sn + 1]);
            let block = &x[f * k..l * k];
            for c in 0..k {
                for r in f..l {
                    rhs[(old(r), c)] = block[c * (l - f) + r - f];
                }
            }
        }
        S::recycle(x);
    }

    /// Forward substitution at one front: the children's contributions added, the diagonal
    /// block solved, and the contribution −L_B y to the pattern rows returned (`below × k`).
    pub(super) fn forward_front<S: Real>(
        &self,
        sn: usize,
        l_values: &[S],
        k: usize,
        block: &mut [S],
        children: Vec<Vec<S>>,
    ) -> Vec<S> {
        let width = self.width(sn);
        let below = self.below(sn);
        let mut out = vec![S::default(); below * k];
        for (&c, contribution) in self.children(sn).iter().zip(&children) {
            let rel = &self.relative[self.row_ptr[c]..self.row_ptr[c + 1]];
            let m = rel.len();
            for j in 0..k {
                let src = &contribution[j * m..(j + 1) * m];
                for (&lr, &v) in rel.iter().zip(src) {
                    let lr = lr as usize;
                    if lr < width {
                        block[j * width + lr] += v;
                    } else {
                        out[j * below + lr - width] += v;
                    }
                }
            }
        }
        if k == 1 {
            let values = &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]];
            forward_columns(values, block, &mut out);
            return out;
        }
        let l = self.l_block(sn, l_values);
        let (top, bottom) = l.split_at_row(width);
        let mut y = MatMut::from_column_major_slice_mut(block, width, k);
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(top, y.rb_mut(), Par::Seq);
        if below > 0 {
            matmul(
                MatMut::from_column_major_slice_mut(&mut out, below, k),
                BlockStructure::Rectangular,
                Accum::Add,
                bottom,
                BlockStructure::Rectangular,
                y.rb(),
                BlockStructure::Rectangular,
                S::from_f64(-1.0),
                Par::Seq,
            );
        }
        out
    }

    /// Backward substitution at one front: x_s = L_ssᵀ⁻¹ (y_s − L_Bᵀ x_B) with x_B gathered from
    /// the parent's front values; returns this front's values [x_s; x_B] (`height × k`) for its
    /// children (empty when it has none).
    pub(super) fn backward_front<S: Real>(
        &self,
        sn: usize,
        l_values: &[S],
        k: usize,
        block: &mut [S],
        parent: Option<&[S]>,
    ) -> Vec<S> {
        let width = self.width(sn);
        let below = self.below(sn);
        let height = width + below;
        let mut x_below = vec![S::default(); below * k];
        if let (Some(front), Some(p)) = (parent, self.parent[sn]) {
            let parent_height = self.width(p) + self.below(p);
            let rel = &self.relative[self.row_ptr[sn]..self.row_ptr[sn + 1]];
            for j in 0..k {
                let src = &front[j * parent_height..(j + 1) * parent_height];
                for (dst, &lr) in x_below[j * below..(j + 1) * below].iter_mut().zip(rel) {
                    *dst = src[lr as usize];
                }
            }
        }
        if k == 1 {
            let values = &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]];
            backward_columns(values, block, &x_below);
        } else {
            self.backward_dense(sn, l_values, k, block, &x_below);
        }
        if self.children(sn).is_empty() {
            return Vec::new();
        }
        let mut front = Vec::with_capacity(height * k);
        for j in 0..k {
            front.extend_from_slice(&block[j * width..(j + 1) * width]);
            front.extend_from_slice(&x_below[j * below..(j + 1) * below]);
        }
        front
    }

    /// Backward substitution's dense part for several columns: x_s = L_ssᵀ⁻¹ (y_s − L_Bᵀ x_B).
    pub(super) fn backward_dense<S: Real>(
        &self,
        sn: usize,
        l_values: &[S],
        k: usize,
        block: &mut [S],
        x_below: &[S],
    ) {
        let (width, below) = (self.width(sn), self.below(sn));
        let l = self.l_block(sn, l_values);
        let (top, bottom) = l.split_at_row(width);
        let mut x = MatMut::from_column_major_slice_mut(block, width, k);
        if below > 0 {
            matmul(
                x.rb_mut(),
                BlockStructure::Rectangular,
                Accum::Add,
                bottom.transpose(),
                BlockStructure::Rectangular,
                faer::MatRef::from_column_major_slice(x_below, below, k),
                BlockStructure::Rectangular,
                S::from_f64(-1.0),
                Par::Seq,
            );
        }
        faer::linalg::triangular_solve::solve_upper_triangular_in_place(
            top.transpose(),
            x.rb_mut(),
            Par::Seq,
        );
    }

    /// Supernode `sn`'s block of L (`height × width`, column-major).
    pub(super) fn l_block<'a, S: Real>(&self, sn: usize, l_values: &'a [S]) -> faer::MatRef<'a, S> {
        let width = self.width(sn);
        faer::MatRef::from_column_major_slice(
            &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]],
            width + self.below(sn),
            width,
        )
    }
}
