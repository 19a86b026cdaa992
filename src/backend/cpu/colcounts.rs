//! The exact size of a Cholesky factor under an ordering, without building its pattern: the
//! elimination tree and the column counts of L by Gilbert, Ng and Peyton's algorithm (row
//! subtrees counted through their leaves and the least common ancestors of consecutive leaves,
//! as CSparse's `cs_counts`), O(nnz(A) α(n)) time — where faer's symbolic factorization walks
//! every entry of L. `Ordering::Auto` compares its candidates with these counts and builds faer's
//! symbolic factorization for the chosen one only.

use crate::solve::Prediction;

const NONE: usize = usize::MAX;

/// The factor of P A Pᵀ that the permutation `fwd` (new → old, `inv` its inverse) gives, for
/// A's graph `col_ptr` / `row_idx` (both triangles; diagonal entries and duplicates ignored):
/// nnz(L) (diagonal included) and Σ_j c_j² over its column counts c_j.
pub(crate) fn predict(
    col_ptr: &[usize],
    row_idx: &[usize],
    fwd: &[usize],
    inv: &[usize],
) -> Prediction {
    let n = fwd.len();
    let neighbours = |k: usize| {
        let j = fwd[k];
        row_idx[col_ptr[j]..col_ptr[j + 1]].iter().map(|&i| inv[i])
    };
    let parent = elimination_tree(n, &neighbours);
    let post = postorder(&parent);
    let counts = column_counts(&parent, &post, &neighbours);
    let (mut nnz_l, mut flops) = (0.0, 0.0);
    for c in counts {
        let c = c as f64;
        nnz_l += c;
        flops += c * c;
    }
    Prediction { nnz_l, flops }
}

/// The elimination tree of the permuted matrix (`neighbours(k)`: the new numbers of column k's
/// neighbours): Liu's algorithm with path compression.
fn elimination_tree<I: Iterator<Item = usize>>(
    n: usize,
    neighbours: &impl Fn(usize) -> I,
) -> Vec<usize> {
    let (mut parent, mut ancestor) = (vec![NONE; n], vec![NONE; n]);
    for k in 0..n {
        for mut r in neighbours(k).filter(|&i| i < k) {
            while ancestor[r] != NONE && ancestor[r] != k {
                let next = ancestor[r];
                ancestor[r] = k;
                r = next;
            }
            if ancestor[r] == NONE {
                ancestor[r] = k;
                parent[r] = k;
            }
        }
    }
    parent
}

/// A postorder of the forest `parent` (children in increasing order, roots in increasing order).
fn postorder(parent: &[usize]) -> Vec<usize> {
    let n = parent.len();
    // Children lists, each in increasing order: pushed in decreasing order onto linked heads.
    let (mut head, mut next) = (vec![NONE; n], vec![NONE; n]);
    for j in (0..n).rev() {
        if parent[j] != NONE {
            next[j] = head[parent[j]];
            head[parent[j]] = j;
        }
    }
    let mut post = Vec::with_capacity(n);
    let mut stack = Vec::new();
    for root in (0..n).filter(|&j| parent[j] == NONE) {
        stack.push(root);
        while let Some(&top) = stack.last() {
            let child = head[top];
            if child == NONE {
                stack.pop();
                post.push(top);
            } else {
                head[top] = next[child];
                stack.push(child);
            }
        }
    }
    post
}

/// Column counts of L (diagonal included) from the tree, its postorder and the pattern: each
/// row i's subtree adds 1 at its leaves, −1 at the least common ancestor of consecutive leaves
/// and −1 above its root, and a column's count is the sum over its subtree.
fn column_counts<I: Iterator<Item = usize>>(
    parent: &[usize],
    post: &[usize],
    neighbours: &impl Fn(usize) -> I,
) -> Vec<usize> {
    let n = parent.len();
    // first[j]: the postorder index of j's first descendant.
    let mut first = vec![NONE; n];
    let mut delta = vec![0isize; n];
    for (k, &leaf) in post.iter().enumerate() {
        // A node first reached here has no descendants: its own row subtree is itself.
        delta[leaf] = isize::from(first[leaf] == NONE);
        let mut j = leaf;
        while j != NONE && first[j] == NONE {
            first[j] = k;
            j = parent[j];
        }
    }
    let mut ancestor: Vec<usize> = (0..n).collect();
    let (mut max_first, mut prev_leaf) = (vec![NONE; n], vec![NONE; n]);
    for &j in post {
        if parent[j] != NONE {
            delta[parent[j]] -= 1;
        }
        for i in neighbours(j) {
            // Is j a leaf of row i's subtree? (no neighbour of i among j's descendants so far)
            if i <= j || (max_first[i] != NONE && first[j] <= max_first[i]) {
                continue;
            }
            max_first[i] = first[j];
            let previous = prev_leaf[i];
            prev_leaf[i] = j;
            delta[j] += 1;
            if previous != NONE {
                // The least common ancestor of the previous leaf and j (path compression).
                let mut q = previous;
                while q != ancestor[q] {
                    q = ancestor[q];
                }
                let mut s = previous;
                while s != q {
                    let up = ancestor[s];
                    ancestor[s] = q;
                    s = up;
                }
                delta[q] -= 1;
            }
        }
        if parent[j] != NONE {
            ancestor[j] = parent[j];
        }
    }
    for &j in post {
        if parent[j] != NONE {
            delta[parent[j]] += delta[j];
        }
    }
    // Every count is at least 1 (the diagonal): the sums are positive.
    delta.into_iter().map(|d| d as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Column counts by eliminating a dense boolean matrix.
    fn dense_counts(n: usize, edges: &[(usize, usize)], inv: &[usize]) -> Vec<usize> {
        let mut m = vec![vec![false; n]; n];
        for &(a, b) in edges {
            let (a, b) = (inv[a], inv[b]);
            m[a][b] = true;
            m[b][a] = true;
        }
        let mut counts = vec![1; n];
        for k in 0..n {
            let below: Vec<usize> = (k + 1..n).filter(|&i| m[i][k]).collect();
            counts[k] += below.len();
            for &a in &below {
                for &b in &below {
                    m[a][b] = true;
                }
            }
        }
        counts
    }

    #[test]
    fn counts_equal_a_dense_symbolic_elimination() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..200 {
            let n = rng.random_range(1..40);
            let m = rng.random_range(0..3 * n);
            let edges: Vec<(usize, usize)> = (0..m)
                .map(|_| (rng.random_range(0..n), rng.random_range(0..n)))
                .collect();
            // Both triangles, some diagonal entries, duplicates.
            let mut adj = vec![Vec::new(); n];
            for &(a, b) in &edges {
                adj[a].push(b);
                adj[b].push(a);
            }
            let (mut col_ptr, mut row_idx) = (vec![0], Vec::new());
            for list in &mut adj {
                list.sort_unstable();
                row_idx.extend_from_slice(list);
                col_ptr.push(row_idx.len());
            }
            let mut fwd: Vec<usize> = (0..n).collect();
            for k in (1..n).rev() {
                fwd.swap(k, rng.random_range(0..=k));
            }
            let mut inv = vec![0; n];
            for (new, &old) in fwd.iter().enumerate() {
                inv[old] = new;
            }
            let expect = dense_counts(n, &edges, &inv);
            let neighbours = |k: usize| {
                let j = fwd[k];
                row_idx[col_ptr[j]..col_ptr[j + 1]].iter().map(|&i| inv[i])
            };
            let parent = elimination_tree(n, &neighbours);
            let post = postorder(&parent);
            assert_eq!(
                column_counts(&parent, &post, &neighbours),
                expect,
                "case {case}"
            );
            let p = predict(&col_ptr, &row_idx, &fwd, &inv);
            assert_eq!(p.nnz_l, expect.iter().sum::<usize>() as f64);
            assert_eq!(p.flops, expect.iter().map(|&c| (c * c) as f64).sum::<f64>());
        }
    }
}
