//! Symbolic phase: [`Plan::new`] builds, once per analysis, what every numeric factorization of
//! the structure reuses — the supernodal tree (parents, children), each pattern row's position in
//! its parent's front (`relative`), A's stored entries by destination front (`a_entries`), the front
//! flops, and the cut of the tree into sequential subtrees with their work-vector anchors.
//!
//! Contract: pure function of the structure and faer's symbolic factor; `None` when the
//! multifrontal path does not apply (simplicial factor, fronts beyond `u32` rows). Memory:
//! O(nnz(L) / supernode width + nnz(A)) index arrays. No numeric state.

use std::collections::BinaryHeap;

use faer::sparse::linalg::cholesky::supernodal::SymbolicSupernodalCholesky;
use faer::sparse::linalg::cholesky::{SymbolicCholesky, SymbolicCholeskyRaw};

use crate::sparse::Structure;

use super::*;

impl Plan {
    /// The plan for `symbolic` over `structure`'s pattern, or `None` when the analysis is not
    /// supernodal, or its tree is not numbered children-first with sorted patterns (faer's is;
    /// this is a guard). Named steps: the tree, then (on two threads) the relative rows and A's
    /// destinations, the front flops, the cut, the subtrees' postorders and their anchors.
    pub(crate) fn new(structure: &Structure, symbolic: &SymbolicCholesky<usize>) -> Option<Plan> {
        let SymbolicCholeskyRaw::Supernodal(s) = symbolic.raw() else {
            return None;
        };
        let tree = Tree::of(s)?;
        let (relative, a_by_front) = rayon::join(
            || tree.relative_rows(),
            || tree.a_destinations(structure, symbolic),
        );
        let (relative, (a_ptr, a_entries)) = (relative?, a_by_front?);
        let front_flops = tree.front_flops();
        let (roots, subtree_roots) = tree.cut(&front_flops);
        let (subtree_ptr, subtree_nodes) = tree.postorders(&subtree_roots);
        let anchor = tree.anchors(&subtree_ptr, &subtree_nodes)?;
        Some(Plan {
            begin: tree.begin,
            row_ptr: tree.row_ptr,
            val_ptr: tree.val_ptr,
            parent: tree.parent,
            child_ptr: tree.child_ptr,
            children: tree.children,
            relative,
            a_ptr,
            a_entries,
            front_flops,
            subtree_ptr,
            subtree_of: subtree_roots
                .iter()
                .enumerate()
                .map(|(t, &root)| (root, t))
                .collect(),
            subtree_nodes,
            roots,
            anchor,
        })
    }
}

/// A's stored entries grouped by supernode: (`a_ptr`, `a_entries`) of [`Plan`].
type EntriesByFront = (Vec<usize>, Vec<(usize, usize)>);

/// The supernodal tree as the plan's steps read it.
struct Tree {
    n: usize,
    begin: Vec<usize>,
    row_ptr: Vec<usize>,
    rows: Vec<usize>,
    val_ptr: Vec<usize>,
    /// The supernode of every column.
    owner: Vec<usize>,
    parent: Vec<Option<usize>>,
    child_ptr: Vec<usize>,
    children: Vec<usize>,
}

/// Local row numbers within one front (diagonal block rows first, then the pattern), through a
/// scratch map stamped per front instead of a binary search per row.
struct FrontRows {
    local: Vec<usize>,
    stamp: Vec<usize>,
}

impl FrontRows {
    fn new(n: usize) -> Self {
        FrontRows {
            local: vec![0; n],
            stamp: vec![usize::MAX; n],
        }
    }

    /// Makes `sn`'s front the one [`FrontRows::find`] answers for.
    fn fill(&mut self, tree: &Tree, sn: usize) {
        let width = tree.width(sn);
        for (k, &r) in tree.pattern(sn).iter().enumerate() {
            self.local[r] = width + k;
            self.stamp[r] = sn;
        }
    }

    /// Row `r`'s place in `sn`'s front (filled last), if it has one.
    fn find(&self, tree: &Tree, sn: usize, r: usize) -> Option<usize> {
        if (tree.begin[sn]..tree.begin[sn + 1]).contains(&r) {
            Some(r - tree.begin[sn])
        } else if self.stamp[r] == sn {
            Some(self.local[r])
        } else {
            None
        }
    }
}

impl Tree {
    /// Supernodes, owners, parents (the supernode of the first pattern row) and children; `None`
    /// unless children come before parents and patterns are sorted, and n fits `u32`.
    fn of(s: &SymbolicSupernodalCholesky<usize>) -> Option<Tree> {
        let ns = s.n_supernodes();
        let n = s.nrows();
        if u32::try_from(n).is_err() {
            return None;
        }
        let begin: Vec<usize> = s.supernode_begin().iter().copied().chain([n]).collect();
        if begin.len() != ns + 1 || s.supernode_end() != &begin[1..] {
            return None;
        }
        let mut tree = Tree {
            n,
            row_ptr: s.col_ptr_for_row_idx().to_vec(),
            rows: s.row_idx().to_vec(),
            val_ptr: s.col_ptr_for_val().to_vec(),
            owner: vec![0usize; n],
            begin,
            parent: Vec::new(),
            child_ptr: Vec::new(),
            children: Vec::new(),
        };
        for sn in 0..ns {
            let (b, e) = (tree.begin[sn], tree.begin[sn + 1]);
            tree.owner[b..e].fill(sn);
        }
        tree.parent = (0..ns)
            .map(|sn| tree.pattern(sn).first().map(|&r| tree.owner[r]))
            .collect();
        if (0..ns).any(|sn| tree.parent[sn].is_some_and(|p| p <= sn))
            || (0..ns).any(|sn| tree.pattern(sn).windows(2).any(|w| w[0] >= w[1]))
        {
            return None;
        }
        let (child_ptr, children) = crate::sparse::counting_groups(ns, ns, |sn| {
            [
                tree.parent[sn].unwrap_or(crate::sparse::NO_GROUP),
                crate::sparse::NO_GROUP,
            ]
        });
        tree.child_ptr = child_ptr;
        tree.children = children;
        Some(tree)
    }

    fn supernodes(&self) -> usize {
        self.begin.len() - 1
    }

    fn width(&self, sn: usize) -> usize {
        self.begin[sn + 1] - self.begin[sn]
    }

    fn pattern(&self, sn: usize) -> &[usize] {
        &self.rows[self.row_ptr[sn]..self.row_ptr[sn + 1]]
    }

    fn children_of(&self, sn: usize) -> &[usize] {
        &self.children[self.child_ptr[sn]..self.child_ptr[sn + 1]]
    }

    /// Each pattern row's place in its parent's front.
    fn relative_rows(&self) -> Option<Vec<u32>> {
        let mut front = FrontRows::new(self.n);
        let mut relative = vec![0u32; self.rows.len()];
        for p in 0..self.supernodes() {
            front.fill(self, p);
            for &c in self.children_of(p) {
                for (k, &r) in self.pattern(c).iter().enumerate() {
                    relative[self.row_ptr[c] + k] = front.find(self, p, r)? as u32;
                }
            }
        }
        Some(relative)
    }

    /// Where each stored entry of A's lower triangle goes in L (permuted): the entries grouped
    /// by supernode, each as (stored index, offset in the supernode's block), in stored order
    /// within a supernode — the numeric phase scatters them in the front's own task. Entries
    /// above the diagonal of a full storage are left out: they are read from their mirror.
    fn a_destinations(
        &self,
        structure: &Structure,
        symbolic: &SymbolicCholesky<usize>,
    ) -> Option<EntriesByFront> {
        let inverse: Vec<usize> = match symbolic.perm() {
            Some(p) => p.arrays().1.to_vec(),
            None => (0..self.n).collect(),
        };
        let a = structure.faer_pattern();
        let (a_cols, a_rows) = (a.col_ptr(), a.row_idx());
        // (stored index, supernode, offset in its block) of every entry read.
        let mut found = Vec::with_capacity(a_rows.len());
        for j in 0..a.ncols() {
            let stored = a_cols[j]..a_cols[j + 1];
            for (k, &i) in stored.clone().zip(&a_rows[stored]) {
                if i < j {
                    continue;
                }
                let (pi, pj) = (inverse[i], inverse[j]);
                let (r, c) = (pi.max(pj), pi.min(pj));
                let sn = self.owner[c];
                let width = self.width(sn);
                let height = width + self.pattern(sn).len();
                let local = if r < self.begin[sn + 1] {
                    r - self.begin[sn]
                } else {
                    width + self.pattern(sn).binary_search(&r).ok()?
                };
                found.push((k, sn, (c - self.begin[sn]) * height + local));
            }
        }
        let (ptr, order) = crate::sparse::counting_groups(self.supernodes(), found.len(), |e| {
            [found[e].1, crate::sparse::NO_GROUP]
        });
        let entries = order
            .into_iter()
            .map(|e| (found[e].0, found[e].2))
            .collect();
        Some((ptr, entries))
    }

    /// Dense work of each front, in flops.
    fn front_flops(&self) -> Vec<f64> {
        (0..self.supernodes())
            .map(|sn| {
                let width = self.width(sn) as f64;
                let below = self.pattern(sn).len() as f64;
                width * width * width / 3.0 + width * width * below + width * below * below
            })
            .collect()
    }

    /// The forest's roots and the cut: the largest subtree is split into its children while it
    /// holds more than [`SPLIT_SHARE`] of the work (at most [`MAX_SUBTREES`] subtrees); returns
    /// the subtrees' roots, largest first.
    fn cut(&self, front_flops: &[f64]) -> (Vec<usize>, Vec<usize>) {
        let ns = self.supernodes();
        // Children have smaller numbers: one pass accumulates each subtree's flops.
        let mut subtree_flops = front_flops.to_vec();
        for sn in 0..ns {
            if let Some(p) = self.parent[sn] {
                subtree_flops[p] += subtree_flops[sn];
            }
        }
        let roots: Vec<usize> = (0..ns).filter(|&sn| self.parent[sn].is_none()).collect();
        let total: f64 = roots.iter().map(|&sn| subtree_flops[sn]).sum();
        let key = |sn: usize| (subtree_flops[sn].to_bits(), sn);
        let mut heap: BinaryHeap<(u64, usize)> = roots.iter().map(|&sn| key(sn)).collect();
        while let Some(&(_, sn)) = heap.peek() {
            let count = self.children_of(sn).len();
            if subtree_flops[sn] <= SPLIT_SHARE * total
                || count == 0
                || heap.len() + count > MAX_SUBTREES
            {
                break;
            }
            heap.pop();
            heap.extend(self.children_of(sn).iter().map(|&c| key(c)));
        }
        let mut subtree_roots: Vec<usize> = heap.into_iter().map(|(_, sn)| sn).collect();
        subtree_roots.sort_by(|&a, &b| {
            subtree_flops[b]
                .total_cmp(&subtree_flops[a])
                .then(a.cmp(&b))
        });
        (roots, subtree_roots)
    }

    /// Each cut subtree as its postorder (root last), concatenated: (ranges, supernodes).
    fn postorders(&self, subtree_roots: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut subtree_ptr = vec![0];
        let mut subtree_nodes = Vec::new();
        let mut walk: Vec<(usize, usize)> = Vec::new();
        for &root in subtree_roots {
            walk.push((root, self.child_ptr[root]));
            while let Some((sn, next)) = walk.last_mut() {
                if *next < self.child_ptr[*sn + 1] {
                    let c = self.children[*next];
                    *next += 1;
                    walk.push((c, self.child_ptr[c]));
                } else {
                    subtree_nodes.push(*sn);
                    walk.pop();
                }
            }
            subtree_ptr.push(subtree_nodes.len());
        }
        (subtree_ptr, subtree_nodes)
    }

    /// Each cut subtree's work-vector index of its supernodes' pattern rows: a row of the
    /// subtree at its supernode's offset there, a row above it at its place in the root's
    /// pattern (every such row is one: row patterns only grow towards the root).
    fn anchors(&self, subtree_ptr: &[usize], subtree_nodes: &[usize]) -> Option<Vec<u32>> {
        let mut front = FrontRows::new(self.n);
        let mut anchor = vec![0u32; self.rows.len()];
        let mut offset = vec![(usize::MAX, 0usize); self.supernodes()];
        for t in 0..subtree_ptr.len() - 1 {
            let nodes = &subtree_nodes[subtree_ptr[t]..subtree_ptr[t + 1]];
            let mut len = 0;
            for &sn in nodes {
                offset[sn] = (t, len);
                len += self.width(sn);
            }
            let root = nodes[nodes.len() - 1];
            let root_width = self.width(root);
            front.fill(self, root);
            for &sn in nodes {
                let range = self.row_ptr[sn]..self.row_ptr[sn + 1];
                for (slot, &r) in anchor[range.clone()].iter_mut().zip(&self.rows[range]) {
                    let (in_subtree, at) = offset[self.owner[r]];
                    let at = if in_subtree == t {
                        at + r - self.begin[self.owner[r]]
                    } else if front.stamp[r] == root {
                        len + front.local[r] - root_width
                    } else {
                        return None;
                    };
                    *slot = u32::try_from(at).ok()?;
                }
            }
        }
        Some(anchor)
    }
}
