//! Supervariables: unknowns whose columns of A + Aᵀ (diagonal included) have the same pattern —
//! the 3 displacement components of a node in elasticity, the 6 of a shell node. An ordering
//! computed on the graph of supervariables, each expanded into consecutive unknowns, fills the
//! same as one on the full graph (indistinguishable unknowns are eliminated together anyway), at a
//! fraction of the cost: for 3 unknowns per node, a third of the vertices and a ninth of the edges.

use super::analysis::FullPattern;
use crate::error::Result;
use crate::sparse::{Structure, Symmetry};

/// Compress only when it removes at least a third of the unknowns.
const WORTH_IT: f64 = 2.0 / 3.0;

/// The unknowns grouped into supervariables and the graph between them.
pub(crate) struct Compressed {
    /// Members of supervariable s: `members[ptr[s]..ptr[s + 1]]`, in increasing order.
    ptr: Vec<usize>,
    members: Vec<usize>,
    /// Pattern of the compressed graph (both triangles, diagonal included), sorted rows.
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
}

/// Hash of one member of a closed neighbourhood (the neighbourhood's key sums them).
fn mix(i: usize) -> u64 {
    (i as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// `items` sorted, fast for well-spread `hash`es: a partition into 256 buckets by the hash's
/// top byte (256 sequential write streams), then each bucket sorted while it sits in cache (a
/// full sort of 10⁶ keys took 0.2 s here, a counting sort into 10⁶ buckets 0.05 s of cache
/// misses). Items in one bucket share the top byte, so the result is the items' order wherever
/// `hash` orders them as `Ord` does within a bucket.
fn bucket_sorted<T: Ord + Copy + Default>(items: &[T], hash: impl Fn(&T) -> u64) -> Vec<T> {
    let bucket = |item: &T| (hash(item) >> 56) as usize;
    let mut ptr = [0usize; 257];
    for item in items {
        ptr[bucket(item) + 1] += 1;
    }
    for b in 0..256 {
        ptr[b + 1] += ptr[b];
    }
    let mut next = ptr;
    let mut sorted = vec![T::default(); items.len()];
    for item in items {
        let b = bucket(item);
        sorted[next[b]] = *item;
        next[b] += 1;
    }
    for w in ptr.windows(2) {
        sorted[w[0]..w[1]].sort_unstable();
    }
    sorted
}

/// 0..n ordered so that equal keys are adjacent, ascending unknowns among equal keys.
fn by_key(keys: &[(u64, usize)]) -> Vec<usize> {
    let items: Vec<((u64, usize), usize)> = keys.iter().copied().zip(0..).collect();
    bucket_sorted(&items, |item| item.0 .0)
        .into_iter()
        .map(|(_, j)| j)
        .collect()
}

/// Whether `structure` may have enough supervariables to compress, from the stored pattern alone
/// (no full pattern built): members of a supervariable share their neighbourhood's hash and size,
/// so fewer than [`WORTH_IT`]·n distinct (hash, size) keys are necessary for compression. On a
/// 10⁶-unknown grid this rejects in tens of milliseconds what building and grouping the full
/// pattern took 0.2 s to reject.
pub(crate) fn worth_trying(structure: &Structure) -> bool {
    let n = structure.ncols();
    if n < 2 || structure.nrows() != n {
        return false;
    }
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mirrored = structure.symmetry() == Symmetry::Lower;
    // Closed neighbourhood of j: j itself plus every stored neighbour (both ends of an entry of
    // a one-triangle storage).
    let mut keys: Vec<(u64, usize)> = (0..n).map(|j| (mix(j), 1)).collect();
    for j in 0..n {
        for &i in &ri[cp[j]..cp[j + 1]] {
            if i != j {
                keys[j].0 = keys[j].0.wrapping_add(mix(i));
                keys[j].1 += 1;
                if mirrored {
                    keys[i].0 = keys[i].0.wrapping_add(mix(j));
                    keys[i].1 += 1;
                }
            }
        }
    }
    // Distinct keys, counted on one word per unknown (a collision only makes the bound looser).
    let words: Vec<u64> = keys
        .iter()
        .map(|&(h, size)| h ^ mix(size).rotate_left(29))
        .collect();
    let sorted = bucket_sorted(&words, |&w| w);
    let distinct = 1 + sorted.windows(2).filter(|w| w[0] != w[1]).count();
    distinct as f64 <= WORTH_IT * n as f64
}

/// The supervariable of every unknown of `full` (indistinguishable closed neighbourhoods), and
/// how many there are: unknowns are bucketed by (neighbourhood hash, size) and each bucket's
/// members compared exactly against its first unplaced member.
fn group(full: &FullPattern, n: usize) -> (Vec<usize>, usize) {
    // Closed neighbourhood of column j: its rows with j itself (present or not).
    let closed = |j: usize| {
        let rows = &full.row_idx[full.col_ptr[j]..full.col_ptr[j + 1]];
        let has_diag = rows.binary_search(&j).is_ok();
        (rows, has_diag)
    };
    let hash = |j: usize| {
        let (rows, has_diag) = closed(j);
        let mut h = rows.iter().fold(0u64, |h, &i| h.wrapping_add(mix(i)));
        if !has_diag {
            h = h.wrapping_add(mix(j));
        }
        (h, rows.len() + usize::from(!has_diag))
    };
    let same = |a: usize, b: usize| {
        let ((ra, da), (rb, db)) = (closed(a), closed(b));
        if da && db {
            return ra == rb;
        }
        // Merge-compare the closed neighbourhoods without building them.
        let with = |rows: &[usize], d: bool, j: usize| {
            let mut v = rows.to_vec();
            if !d {
                let at = v.partition_point(|&i| i < j);
                v.insert(at, j);
            }
            v
        };
        with(ra, da, a) == with(rb, db, b)
    };
    let keys: Vec<(u64, usize)> = (0..n).map(hash).collect();
    let order = by_key(&keys);
    // Supervariable of every unknown: equal keys are checked against the run's first member.
    let mut sv = vec![usize::MAX; n];
    let mut count = 0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && keys[order[end]] == keys[order[start]] {
            end += 1;
        }
        for a in start..end {
            let j = order[a];
            if sv[j] != usize::MAX {
                continue;
            }
            sv[j] = count;
            for &k in &order[a + 1..end] {
                if sv[k] == usize::MAX && same(j, k) {
                    sv[k] = count;
                }
            }
            count += 1;
        }
        start = end;
    }
    (sv, count)
}

/// Renumbers supervariables by their first member, so the compressed graph keeps A's order.
fn renumber_by_first_member(sv: &mut [usize], count: usize) {
    let mut renumber = vec![usize::MAX; count];
    let mut next = 0;
    for s in sv.iter_mut() {
        if renumber[*s] == usize::MAX {
            renumber[*s] = next;
            next += 1;
        }
        *s = renumber[*s];
    }
}

/// The graph between supervariables (CSC, sorted, diagonal included): a representative's
/// neighbours mapped to their supervariables.
fn quotient_graph(
    full: &FullPattern,
    sv: &[usize],
    ptr: &[usize],
    members: &[usize],
) -> (Vec<usize>, Vec<usize>) {
    let count = ptr.len() - 1;
    let mut col_ptr = Vec::with_capacity(count + 1);
    let mut row_idx = Vec::new();
    col_ptr.push(0);
    for s in 0..count {
        let rep = members[ptr[s]];
        let begin = row_idx.len();
        row_idx.extend(
            full.row_idx[full.col_ptr[rep]..full.col_ptr[rep + 1]]
                .iter()
                .map(|&i| sv[i]),
        );
        row_idx.push(s);
        row_idx[begin..].sort_unstable();
        let mut w = begin;
        for r in begin..row_idx.len() {
            if r == begin || row_idx[r] != row_idx[w - 1] {
                row_idx[w] = row_idx[r];
                w += 1;
            }
        }
        row_idx.truncate(w);
        col_ptr.push(row_idx.len());
    }
    (col_ptr, row_idx)
}

impl Compressed {
    /// Groups the unknowns of `full` (A + Aᵀ, sorted rows); `None` when fewer than a third of
    /// them would go.
    pub(crate) fn new(full: &FullPattern) -> Option<Self> {
        let n = full.col_ptr.len().checked_sub(1)?;
        if n < 2 {
            return None;
        }
        let (mut sv, count) = group(full, n);
        if count as f64 > WORTH_IT * n as f64 {
            return None;
        }
        renumber_by_first_member(&mut sv, count);
        let (ptr, members) =
            crate::sparse::counting_groups(count, n, |j| [sv[j], crate::sparse::NO_GROUP]);
        let (col_ptr, row_idx) = quotient_graph(full, &sv, &ptr, &members);
        Some(Self {
            ptr,
            members,
            col_ptr,
            row_idx,
        })
    }

    /// Number of supervariables.
    pub(crate) fn len(&self) -> usize {
        self.col_ptr.len() - 1
    }

    /// Pattern of the supervariable graph (both triangles, diagonal included): column pointers.
    pub(crate) fn col_ptr(&self) -> &[usize] {
        &self.col_ptr
    }

    /// Pattern of the supervariable graph: row indices, sorted in each column.
    pub(crate) fn row_idx(&self) -> &[usize] {
        &self.row_idx
    }

    /// Unknowns per supervariable.
    pub(crate) fn weights(&self) -> Vec<usize> {
        self.ptr.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// AMD on the compressed graph, expanded: (new → old, old → new) over the unknowns.
    pub(crate) fn amd(&self) -> Result<(Vec<usize>, Vec<usize>)> {
        let m = self.len();
        let (perm, _) = super::analysis::amd_order(m, &self.col_ptr, &self.row_idx)?;
        Ok(self.expand(&perm))
    }

    /// Expands an ordering of the supervariables (new → old) to one of the unknowns.
    pub(crate) fn expand(&self, perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let fwd: Vec<usize> = perm
            .iter()
            .flat_map(|&s| self.members[self.ptr[s]..self.ptr[s + 1]].iter().copied())
            .collect();
        let mut inv = vec![0; fwd.len()];
        for (new, &old) in fwd.iter().enumerate() {
            inv[old] = new;
        }
        (fwd, inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, cols: &[&[usize]]) -> FullPattern {
        let mut col_ptr = vec![0];
        let mut row_idx = vec![];
        for c in cols {
            row_idx.extend_from_slice(c);
            col_ptr.push(row_idx.len());
        }
        assert_eq!(col_ptr.len(), n + 1);
        FullPattern {
            col_ptr,
            row_idx,
            source: None,
        }
    }

    #[test]
    fn groups_indistinguishable_unknowns_and_expands_orderings() {
        // Unknowns {0, 2} and {1, 3} are indistinguishable (a 2-node, 2-component bar); 4 is
        // coupled to 1 and 3 only. Column 2 omits its diagonal: closed neighbourhoods still match.
        let full = pattern(
            5,
            &[
                &[0, 1, 2, 3],
                &[0, 1, 2, 3, 4],
                &[0, 1, 3],
                &[0, 1, 2, 3, 4],
                &[1, 3, 4],
            ],
        );
        let c = Compressed::new(&full).expect("5 → 3 is worth compressing");
        assert_eq!(c.len(), 3);
        assert_eq!(c.weights(), vec![2, 2, 1]);
        assert_eq!(c.col_ptr(), &[0, 2, 5, 7]);
        assert_eq!(c.row_idx(), &[0, 1, 0, 1, 2, 1, 2]);
        let (fwd, inv) = c.expand(&[2, 0, 1]);
        assert_eq!(fwd, vec![4, 0, 2, 1, 3]);
        for (new, &old) in fwd.iter().enumerate() {
            assert_eq!(inv[old], new);
        }
        let (fwd, _) = c.amd().unwrap();
        let mut sorted = fwd.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        // Members of a supervariable stay consecutive.
        let at = |u: usize| fwd.iter().position(|&v| v == u).unwrap();
        assert_eq!(at(0).abs_diff(at(2)), 1);
        assert_eq!(at(1).abs_diff(at(3)), 1);
    }

    /// The screen on the stored pattern lets through structures whose unknowns come in groups —
    /// numbered node by node (lower storage) or field by field (full storage) — and rejects a
    /// scalar grid; what it lets through does compress, to one supervariable per node.
    #[test]
    fn screen_passes_grouped_unknowns_and_rejects_a_scalar_grid() {
        let k = 6;
        let edges: Vec<(usize, usize)> = (0..k * k)
            .flat_map(|v| {
                let right = (v % k + 1 < k).then_some((v, v + 1));
                let down = (v + k < k * k).then_some((v, v + k));
                right.into_iter().chain(down)
            })
            .collect();
        let nodes = k * k;
        let build = |dofs: usize, index: &dyn Fn(usize, usize) -> usize, symmetry: Symmetry| {
            let mut pairs = Vec::new();
            let coupled = edges
                .iter()
                .copied()
                .chain((0..nodes).map(|v| (v, v)))
                .collect::<Vec<_>>();
            for &(u, v) in &coupled {
                for a in 0..dofs {
                    for b in 0..dofs {
                        let (r, c) = (index(v, a), index(u, b));
                        match symmetry {
                            Symmetry::Lower => pairs.push((r.max(c), r.min(c))),
                            _ => pairs.extend([(r, c), (c, r)]),
                        }
                    }
                }
            }
            Structure::from_pairs(nodes * dofs, nodes * dofs, &pairs, symmetry)
                .unwrap()
                .0
        };
        let node_major = build(3, &|v, a| 3 * v + a, Symmetry::Lower);
        let field_major = build(3, &|v, a| a * nodes + v, Symmetry::Full);
        let scalar = build(1, &|v, _| v, Symmetry::Lower);
        for (name, structure) in [("node-major", node_major), ("field-major", field_major)] {
            assert!(worth_trying(&structure), "{name}: rejected");
            let full = super::super::analysis::full_pattern(&structure).unwrap();
            let c = Compressed::new(&full).expect(name);
            assert_eq!(c.len(), nodes, "{name}");
            assert!(c.weights().iter().all(|&w| w == 3), "{name}");
        }
        assert!(!worth_trying(&scalar));
        let full = super::super::analysis::full_pattern(&scalar).unwrap();
        assert!(Compressed::new(&full).is_none());
    }

    #[test]
    fn distinct_columns_are_not_compressed() {
        // A path 0 – 1 – 2: every closed neighbourhood differs.
        let full = pattern(3, &[&[0, 1], &[0, 1, 2], &[1, 2]]);
        assert!(Compressed::new(&full).is_none());
    }
}
