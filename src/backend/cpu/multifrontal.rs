//! A parallel multifrontal LLᵀ over faer's supernodal symbolic analysis.
//!
//! faer's numeric supernodal factorization is left-looking and walks the supernodes one after
//! another: each descendant's update is a separate small product, and its `Par` only reaches
//! inside those products, so on a 3D factor two threads run barely faster than one. This
//! factorization keeps faer's symbolic analysis and writes L in faer's exact value layout (faer's
//! supernodal solves, [`LltRef`](faer::sparse::linalg::cholesky::LltRef), read it; the GPU upload
//! and the diagnostics are unchanged), but computes it multifrontally:
//!
//! - each supernode assembles its front from A and its children's update matrices
//!   (extend-add), factors its diagonal block, solves its off-diagonal block and forms its own
//!   update matrix −L_B L_Bᵀ with one large product;
//! - the assembly tree is cut once per analysis: the largest subtree is split into its children
//!   until every remaining subtree holds at most 1/16 of the flops; those subtrees run
//!   sequentially (each in postorder with a stack of update matrices, no synchronization), and
//!   the supernodes above them — the large separators of a nested-dissection ordering — run
//!   as soon as their children are done, siblings in parallel on the rayon pool, each front with
//!   faer's parallel dense kernels when it is large;
//! - large update matrices are recycled between fronts and factorizations (fresh allocations of
//!   tens of MB cost page faults that were a quarter of an elasticity factorization).
//!
//! The solves with such a factor run over the same cut tree ([`Plan::solve_in_place`]): forward
//! substitution bottom-up, each front passing a contribution vector to its parent; backward
//! substitution top-down, each front reading its pattern rows from its parent's front values.
//!
//! The cut depends only on the predicted flops, never on the thread count, and every product
//! runs the same operations in the same order, so factors and solutions are bit-identical on any
//! number of threads.

use std::collections::{BinaryHeap, HashMap};

use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::sparse::linalg::cholesky::{SymbolicCholesky, SymbolicCholeskyRaw};
use faer::{Accum, MatMut, Par};

use crate::sparse::Structure;

/// Subtrees above this share of the total flops are split into their children.
const SPLIT_SHARE: f64 = 1.0 / 16.0;
/// At most this many parallel subtrees.
const MAX_SUBTREES: usize = 256;
/// A front whose dense work is above this many flops uses the rayon pool's threads.
const PARALLEL_FRONT_FLOPS: f64 = 2e7;

/// A bottom-up step: (supernode, its block, its children's results, parallelism) → its result.
type UpOp<'a, T, E> =
    dyn Fn(usize, &mut [f64], Vec<T>, Par) -> std::result::Result<T, E> + Sync + 'a;
/// A top-down step: (supernode, its block, its parent's result) → its result.
type DownOp<'a> = dyn Fn(usize, &mut [f64], Option<&[f64]>) -> Vec<f64> + Sync + 'a;
/// A whole cut subtree bottom-up: (subtree, its supernodes' blocks in its postorder) → its
/// root's result.
type SubtreeUp<'a, T, E> = dyn Fn(usize, Vec<&mut [f64]>) -> std::result::Result<T, E> + Sync + 'a;
/// A whole cut subtree top-down: (subtree, its supernodes' blocks in its postorder, the root's
/// parent's result).
type SubtreeDown<'a> = dyn Fn(usize, Vec<&mut [f64]>, Option<&[f64]>) + Sync + 'a;

/// Fronts at most this wide and this high are factored by [`small_front`]: most supernodes of a
/// 2D factor are one to three columns wide, where the dense kernels' dispatch costs more than
/// the arithmetic.
const SMALL_FRONT_WIDTH: usize = 4;
const SMALL_FRONT_HEIGHT: usize = 64;

/// A small front in place: the `height × width` column-major `block` (diagonal block on top)
/// becomes [L_ss; L_B] by right-looking Cholesky, and `update` (`below × below`, lower triangle)
/// receives −L_B L_Bᵀ. Fails at the front column of the first pivot that is not positive.
fn small_front(block: &mut [f64], width: usize, update: &mut [f64]) -> Result<(), usize> {
    let height = block.len() / width.max(1);
    let below = height - width;
    for c in 0..width {
        let (done, rest) = block.split_at_mut((c + 1) * height);
        let column = &mut done[c * height..];
        let pivot = column[c];
        if pivot.is_nan() || pivot <= 0.0 {
            return Err(c);
        }
        let d = pivot.sqrt();
        column[c] = d;
        let inv = 1.0 / d;
        for v in &mut column[c + 1..] {
            *v *= inv;
        }
        // The columns right of c in the front, rows from their diagonal down.
        for (k, later) in rest.chunks_exact_mut(height).enumerate() {
            let j = c + 1 + k;
            axpy(&mut later[j..], -column[j], &column[j..]);
        }
    }
    for c in 0..width {
        let lb = &block[c * height + width..(c + 1) * height];
        for (j, &a) in lb.iter().enumerate() {
            axpy(&mut update[j * below + j..(j + 1) * below], -a, &lb[j..]);
        }
    }
    Ok(())
}

/// One supernode of a one-column forward substitution: `values` its columns of L (diagonal
/// block on top, then the pattern rows), `top` its rows of the right-hand side (solved in place),
/// `below` receives −L_B y for its pattern rows. One axpy per column of L: the solve is
/// memory-bound, and most supernodes are too small for the dense kernels' dispatch to pay.
fn forward_columns(values: &[f64], top: &mut [f64], below: &mut [f64]) {
    let width = top.len();
    for (c, column) in values.chunks_exact(width + below.len()).enumerate() {
        let y = top[c] / column[c];
        top[c] = y;
        axpy(&mut top[c + 1..], -y, &column[c + 1..width]);
        axpy(below, -y, &column[width..]);
    }
}

/// One supernode of a one-column backward substitution: x_s = L_ssᵀ⁻¹ (y_s − L_Bᵀ x_B) in place in
/// `top`, `below` holding x at its pattern rows; one dot product per column of L.
fn backward_columns(values: &[f64], top: &mut [f64], below: &[f64]) {
    let width = top.len();
    for (c, column) in values.chunks_exact(width + below.len()).enumerate().rev() {
        let s = dot(&column[c + 1..width], &top[c + 1..]) + dot(&column[width..], below);
        top[c] = (top[c] - s) / column[c];
    }
}

/// y ← y + a·x.
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// x·y with four partial sums (vectorizable; a fixed order, so the same bits on every run).
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    let mut acc = [0.0f64; 4];
    for (a, b) in xc.zip(yc) {
        for l in 0..4 {
            acc[l] += a[l] * b[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `data` cut into one block per supernode at `ptr` (`ptr[s]..ptr[s + 1]`).
fn split_blocks<'a>(data: &'a mut [f64], ptr: &[usize]) -> Vec<&'a mut [f64]> {
    let mut blocks = Vec::with_capacity(ptr.len().saturating_sub(1));
    let mut rest = data;
    for w in ptr.windows(2) {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(w[1] - w[0]);
        blocks.push(head);
        rest = tail;
    }
    blocks
}

/// One traversal's shared state: the supernodes' blocks, each taken once by the task that
/// owns it.
struct Context<'l> {
    blocks: std::sync::Mutex<Vec<Option<&'l mut [f64]>>>,
}

impl<'l> Context<'l> {
    fn new(blocks: Vec<&'l mut [f64]>) -> Self {
        Context {
            blocks: std::sync::Mutex::new(blocks.into_iter().map(Some).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<&'l mut [f64]>>> {
        self.blocks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, sn: usize) -> &'l mut [f64] {
        self.lock()[sn].take().unwrap_or_default()
    }

    fn take_all(&self, nodes: &[usize]) -> Vec<&'l mut [f64]> {
        let mut all = self.lock();
        nodes
            .iter()
            .map(|&sn| all[sn].take().unwrap_or_default())
            .collect()
    }
}

/// A front's update matrix: `dim × dim`, column-major, only the lower triangle meaningful.
#[derive(Default)]
struct Update {
    dim: usize,
    data: Vec<f64>,
}

impl Update {
    fn col(&self, j: usize) -> &[f64] {
        &self.data[j * self.dim..(j + 1) * self.dim]
    }
    fn col_mut(&mut self, j: usize) -> &mut [f64] {
        &mut self.data[j * self.dim..(j + 1) * self.dim]
    }
}

/// [`Plan::a_dest`] of an entry that is not read.
const SKIPPED: usize = usize::MAX;

/// Update matrices at least this long are recycled between fronts and factorizations.
const RECYCLED_LEN: usize = 1 << 14;

/// Why a multifrontal factorization stopped.
#[derive(Debug, PartialEq)]
pub(crate) enum FrontError {
    /// A non-positive pivot at this column of the permuted matrix.
    NonPositivePivot(usize),
    /// An update matrix of this many values could not be allocated.
    OutOfMemory(usize),
}

/// What one analysis needs to run the multifrontal factorization: the tree, the assembly maps
/// and the parallel schedule. Built once per symbolic analysis and cached on the structure.
pub(crate) struct Plan {
    /// First column of each supernode (`n_supernodes + 1` entries).
    begin: Vec<usize>,
    /// Start of each supernode's pattern (rows below its diagonal block, permuted row indices
    /// ascending) in faer's `row_idx`, and so in `relative`.
    row_ptr: Vec<usize>,
    /// Start of each supernode's values in L (faer's `col_ptr_for_val`).
    val_ptr: Vec<usize>,
    /// Parent of each supernode (the supernode of its first pattern row).
    parent: Vec<Option<usize>>,
    /// Children of each supernode, ascending, as ranges of `children`.
    child_ptr: Vec<usize>,
    children: Vec<usize>,
    /// For each pattern row of a supernode: its position in the parent's front
    /// (diagonal block rows first, then the parent's pattern), parallel to faer's `row_idx`.
    /// `u32` (fronts are far smaller than 2³² rows; [`Plan::new`] declines larger matrices):
    /// half the memory of this, the plan's largest array.
    relative: Vec<u32>,
    /// For each stored entry of A: its offset in L's values ([`SKIPPED`] for entries above the
    /// diagonal of a full storage).
    a_dest: Vec<usize>,
    /// Dense work of each supernode's front, in flops.
    front_flops: Vec<f64>,
    /// The parallel subtrees, largest first, each a range of `subtree_nodes` holding its
    /// supernodes in postorder (root last).
    subtree_ptr: Vec<usize>,
    subtree_nodes: Vec<usize>,
    /// The cut subtrees by root: index into `subtree_ptr`.
    subtree_of: HashMap<usize, usize>,
    /// Supernodes without a parent.
    roots: Vec<usize>,
    /// For each pattern row of a supernode inside a cut subtree: its index in the subtree's
    /// work vector (its supernodes' rows in its postorder, then its root's pattern rows),
    /// parallel to faer's `row_idx`.
    anchor: Vec<u32>,
    /// Buffers of finished update matrices, reused by later fronts and factorizations.
    spare: std::sync::Mutex<Vec<Vec<f64>>>,
}

impl Plan {
    /// The plan for `symbolic` over `structure`'s pattern, or `None` when the analysis is not
    /// supernodal, or its tree is not numbered children-first with sorted patterns (faer's is;
    /// this is a guard).
    pub(crate) fn new(structure: &Structure, symbolic: &SymbolicCholesky<usize>) -> Option<Plan> {
        let SymbolicCholeskyRaw::Supernodal(s) = symbolic.raw() else {
            return None;
        };
        let ns = s.n_supernodes();
        let n = s.nrows();
        if u32::try_from(n).is_err() {
            return None;
        }
        let begin: Vec<usize> = s.supernode_begin().iter().copied().chain([n]).collect();
        if begin.len() != ns + 1 || s.supernode_end() != &begin[1..] {
            return None;
        }
        let row_ptr = s.col_ptr_for_row_idx().to_vec();
        let rows = s.row_idx().to_vec();
        let val_ptr = s.col_ptr_for_val().to_vec();
        // The supernode of every column, and each supernode's parent: the supernode of its
        // first pattern row.
        let mut owner = vec![0usize; n];
        for sn in 0..ns {
            owner[begin[sn]..begin[sn + 1]].fill(sn);
        }
        let pattern = |sn: usize| &rows[row_ptr[sn]..row_ptr[sn + 1]];
        let parent: Vec<Option<usize>> = (0..ns)
            .map(|sn| pattern(sn).first().map(|&r| owner[r]))
            .collect();
        if (0..ns).any(|sn| parent[sn].is_some_and(|p| p <= sn))
            || (0..ns).any(|sn| pattern(sn).windows(2).any(|w| w[0] >= w[1]))
        {
            return None;
        }
        let mut child_count = vec![0usize; ns + 1];
        for p in parent.iter().flatten() {
            child_count[*p + 1] += 1;
        }
        let mut child_ptr = child_count;
        for sn in 0..ns {
            child_ptr[sn + 1] += child_ptr[sn];
        }
        let mut next = child_ptr.clone();
        let mut children = vec![0usize; child_ptr[ns]];
        for (sn, p) in parent.iter().enumerate() {
            if let Some(p) = *p {
                children[next[p]] = sn;
                next[p] += 1;
            }
        }
        // Local row numbers within a front (diagonal block rows first, then the pattern),
        // through one scratch map stamped per front instead of a binary search per row.
        let mut local = vec![0usize; n];
        let mut stamp = vec![usize::MAX; n];
        let fill_front = |sn: usize, local: &mut [usize], stamp: &mut [usize]| {
            let width = begin[sn + 1] - begin[sn];
            for (k, &r) in pattern(sn).iter().enumerate() {
                local[r] = width + k;
                stamp[r] = sn;
            }
        };
        let in_front = |sn: usize, r: usize, local: &[usize], stamp: &[usize]| {
            if (begin[sn]..begin[sn + 1]).contains(&r) {
                Some(r - begin[sn])
            } else if stamp[r] == sn {
                Some(local[r])
            } else {
                None
            }
        };
        // Each pattern row's place in the parent's front, and (on the other thread) where each
        // stored entry of A's lower triangle goes in L (permuted; entries above the diagonal of
        // a full storage are read from their mirror below it).
        let relative = || -> Option<Vec<u32>> {
            let mut relative = vec![0u32; rows.len()];
            for p in 0..ns {
                fill_front(p, &mut local, &mut stamp);
                for &c in &children[child_ptr[p]..child_ptr[p + 1]] {
                    for (k, &r) in pattern(c).iter().enumerate() {
                        relative[row_ptr[c] + k] = in_front(p, r, &local, &stamp)? as u32;
                    }
                }
            }
            Some(relative)
        };
        let a_dest = || -> Option<Vec<usize>> {
            let inverse: Vec<usize> = match symbolic.perm() {
                Some(p) => p.arrays().1.to_vec(),
                None => (0..n).collect(),
            };
            let a = structure.faer_pattern();
            let (a_cols, a_rows) = (a.col_ptr(), a.row_idx());
            let mut a_dest = vec![SKIPPED; a_rows.len()];
            for j in 0..a.ncols() {
                for k in a_cols[j]..a_cols[j + 1] {
                    let i = a_rows[k];
                    if i < j {
                        continue;
                    }
                    let (pi, pj) = (inverse[i], inverse[j]);
                    let (r, c) = (pi.max(pj), pi.min(pj));
                    let sn = owner[c];
                    let width = begin[sn + 1] - begin[sn];
                    let height = width + pattern(sn).len();
                    let local = if r < begin[sn + 1] {
                        r - begin[sn]
                    } else {
                        width + pattern(sn).binary_search(&r).ok()?
                    };
                    a_dest[k] = val_ptr[sn] + (c - begin[sn]) * height + local;
                }
            }
            Some(a_dest)
        };
        let (relative, a_dest) = rayon::join(relative, a_dest);
        let (relative, a_dest) = (relative?, a_dest?);
        // Flops of each front and of each subtree (children have smaller numbers).
        let front_flops: Vec<f64> = (0..ns)
            .map(|sn| {
                let width = (begin[sn + 1] - begin[sn]) as f64;
                let below = pattern(sn).len() as f64;
                width * width * width / 3.0 + width * width * below + width * below * below
            })
            .collect();
        let mut subtree_flops = front_flops.clone();
        for sn in 0..ns {
            if let Some(p) = parent[sn] {
                subtree_flops[p] += subtree_flops[sn];
            }
        }
        // Cut: split the largest subtree while it holds more than SPLIT_SHARE of the work.
        let roots: Vec<usize> = (0..ns).filter(|&sn| parent[sn].is_none()).collect();
        let total: f64 = roots.iter().map(|&sn| subtree_flops[sn]).sum();
        let key = |sn: usize| (subtree_flops[sn].to_bits(), sn);
        let mut heap: BinaryHeap<(u64, usize)> = roots.iter().map(|&sn| key(sn)).collect();
        let mut top = Vec::new();
        while let Some(&(_, sn)) = heap.peek() {
            let count = child_ptr[sn + 1] - child_ptr[sn];
            if subtree_flops[sn] <= SPLIT_SHARE * total
                || count == 0
                || heap.len() + count > MAX_SUBTREES
            {
                break;
            }
            heap.pop();
            top.push(sn);
            heap.extend(
                children[child_ptr[sn]..child_ptr[sn + 1]]
                    .iter()
                    .map(|&c| key(c)),
            );
        }
        // The subtrees, largest first, each as its postorder (root last).
        let mut subtree_roots: Vec<usize> = heap.into_iter().map(|(_, sn)| sn).collect();
        subtree_roots.sort_by(|&a, &b| {
            subtree_flops[b]
                .total_cmp(&subtree_flops[a])
                .then(a.cmp(&b))
        });
        let mut subtree_ptr = vec![0];
        let mut subtree_nodes = Vec::with_capacity(ns - top.len());
        let mut walk: Vec<(usize, usize)> = Vec::new();
        for &root in &subtree_roots {
            walk.push((root, child_ptr[root]));
            while let Some((sn, next)) = walk.last_mut() {
                if *next < child_ptr[*sn + 1] {
                    let c = children[*next];
                    *next += 1;
                    walk.push((c, child_ptr[c]));
                } else {
                    subtree_nodes.push(*sn);
                    walk.pop();
                }
            }
            subtree_ptr.push(subtree_nodes.len());
        }
        // Each cut subtree's work-vector index of its supernodes' pattern rows: a row of the
        // subtree at its supernode's offset there, a row above it at its place in the root's
        // pattern (every such row is one: row patterns only grow towards the root).
        let mut anchor = vec![0u32; rows.len()];
        let mut offset = vec![(usize::MAX, 0usize); ns];
        for t in 0..subtree_roots.len() {
            let nodes = &subtree_nodes[subtree_ptr[t]..subtree_ptr[t + 1]];
            let mut len = 0;
            for &sn in nodes {
                offset[sn] = (t, len);
                len += begin[sn + 1] - begin[sn];
            }
            let root = nodes[nodes.len() - 1];
            let root_width = begin[root + 1] - begin[root];
            fill_front(root, &mut local, &mut stamp);
            for &sn in nodes {
                for q in row_ptr[sn]..row_ptr[sn + 1] {
                    let r = rows[q];
                    let (in_subtree, at) = offset[owner[r]];
                    let at = if in_subtree == t {
                        at + r - begin[owner[r]]
                    } else if stamp[r] == root {
                        len + local[r] - root_width
                    } else {
                        return None;
                    };
                    anchor[q] = u32::try_from(at).ok()?;
                }
            }
        }
        Some(Plan {
            begin,
            row_ptr,
            val_ptr,
            parent,
            child_ptr,
            children,
            relative,
            a_dest,
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
            spare: Default::default(),
        })
    }

    /// A zeroed (lower triangle) update matrix, from the recycled buffers when one fits: fresh
    /// large allocations cost page faults that showed up as a quarter of a 3D factorization.
    fn update_matrix(&self, dim: usize) -> std::result::Result<Update, FrontError> {
        let len = dim * dim;
        let mut data = if len >= RECYCLED_LEN {
            let mut spare = self.lock_spare();
            let best = spare
                .iter()
                .enumerate()
                .filter(|(_, v)| (len..=2 * len).contains(&v.len()))
                .min_by_key(|(_, v)| v.len())
                .map(|(i, _)| i);
            match best {
                Some(i) => spare.swap_remove(i),
                None => {
                    drop(spare);
                    crate::pool::take(len).unwrap_or_default()
                }
            }
        } else {
            Vec::new()
        };
        if data.len() < len {
            data.clear();
            data.try_reserve_exact(len)
                .map_err(|_| FrontError::OutOfMemory(len))?;
            data.resize(len, 0.0);
        } else {
            for j in 0..dim {
                data[j * dim + j..(j + 1) * dim].fill(0.0);
            }
        }
        Ok(Update { dim, data })
    }

    /// Keeps a large update matrix's buffer for later fronts (at most a quarter of the factor's
    /// size in all: more bought no measurable time and cost 135 MB of peak memory on 48³).
    fn recycle(&self, update: Update) {
        if update.data.len() < RECYCLED_LEN {
            return;
        }
        let mut spare = self.lock_spare();
        let held: usize = spare.iter().map(Vec::len).sum();
        if held + update.data.len() <= self.val_ptr.last().copied().unwrap_or(0) / 4 {
            spare.push(update.data);
        }
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f64>>> {
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn width(&self, sn: usize) -> usize {
        self.begin[sn + 1] - self.begin[sn]
    }

    fn below(&self, sn: usize) -> usize {
        self.row_ptr[sn + 1] - self.row_ptr[sn]
    }

    fn children(&self, sn: usize) -> &[usize] {
        &self.children[self.child_ptr[sn]..self.child_ptr[sn + 1]]
    }

    /// Runs the numeric LLᵀ of the values `a_values` (in the structure's storage order) into
    /// `l_values` (faer's supernodal layout, `len_val()` entries, zeroed by the caller: A's
    /// entries are scattered into it, then each front assembles its children's updates into its
    /// block). A non-positive pivot is reported at its permuted column, as faer does.
    pub(crate) fn factor(
        &self,
        a_values: &[f64],
        l_values: &mut [f64],
    ) -> std::result::Result<(), FrontError> {
        for (&dest, &v) in self.a_dest.iter().zip(a_values) {
            if dest != SKIPPED {
                l_values[dest] += v;
            }
        }
        let blocks = split_blocks(l_values, &self.val_ptr);
        self.upward(
            blocks,
            &|sn, block, children, par| self.front(sn, block, children, par),
            None,
        )
    }

    /// Solves L Lᵀ X = B for the factor `l_values` (from [`Plan::factor`]), `x` holding B in
    /// elimination order, blocked by supernode: supernode s's rows are the column-major
    /// `width × k` block at `begin[s]·k`. Forward and backward substitution run over the same
    /// cut tree as the factorization, independent subtrees in parallel; the result does not
    /// depend on the thread count.
    fn solve_blocked(&self, l_values: &[f64], x: &mut [f64], k: usize) {
        let forward = |sn: usize, block: &mut [f64], children: Vec<Vec<f64>>, _| {
            Ok::<_, std::convert::Infallible>(self.forward_front(sn, l_values, k, block, children))
        };
        let backward = |sn: usize, block: &mut [f64], parent: Option<&[f64]>| {
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

    /// Cut subtree `t`'s supernodes in postorder (root last).
    fn subtree(&self, t: usize) -> &[usize] {
        &self.subtree_nodes[self.subtree_ptr[t]..self.subtree_ptr[t + 1]]
    }

    /// A cut subtree's work vector: its supernodes' rows (`blocks`, in its postorder), then
    /// `extra` zeros for its root's pattern rows.
    fn gather(blocks: &[&mut [f64]], extra: usize) -> Vec<f64> {
        let len: usize = blocks.iter().map(|b| b.len()).sum();
        let mut work = Vec::with_capacity(len + extra);
        for b in blocks {
            work.extend_from_slice(b);
        }
        work.resize(len + extra, 0.0);
        work
    }

    /// Copies a cut subtree's rows from `work` back to its blocks.
    fn scatter(work: &[f64], blocks: Vec<&mut [f64]>) {
        let mut at = 0;
        for b in blocks {
            b.copy_from_slice(&work[at..at + b.len()]);
            at += b.len();
        }
    }

    /// Forward substitution over cut subtree `t` for one column (`blocks`: its supernodes' rows
    /// in its postorder); returns the contribution to its root's pattern rows.
    fn forward_subtree(&self, t: usize, l_values: &[f64], blocks: Vec<&mut [f64]>) -> Vec<f64> {
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
            below_part.resize(anchor.len(), 0.0);
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
    fn backward_subtree(
        &self,
        t: usize,
        l_values: &[f64],
        blocks: Vec<&mut [f64]>,
        parent: Option<&[f64]>,
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
    pub(crate) fn solve_in_place(
        &self,
        l_values: &[f64],
        permutation: Option<&[usize]>,
        mut rhs: faer::MatMut<'_, f64>,
    ) {
        let n = self.begin.last().copied().unwrap_or(0);
        let k = rhs.ncols();
        let old = |r: usize| permutation.map_or(r, |p| p[r]);
        let mut x = crate::pool::zeroed(n * k);
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
        crate::pool::recycle(x);
    }

    /// Runs `op` on every supernode, children before parents: each cut subtree sequentially
    /// (postorder, a stack of results), the supernodes above as soon as their children are done,
    /// siblings in parallel; `op` gets the supernode's block and its children's results.
    ///
    /// With `subtree`, a cut subtree is run by it instead, handed all its supernodes' blocks.
    fn upward<T: Send, E: Send>(
        &self,
        blocks: Vec<&mut [f64]>,
        op: &UpOp<'_, T, E>,
        subtree: Option<&SubtreeUp<'_, T, E>>,
    ) -> std::result::Result<(), E> {
        use rayon::prelude::*;
        let context = Context::new(blocks);
        let results: Vec<_> = self
            .roots
            .par_iter()
            .map(|&sn| self.up(sn, &context, op, subtree))
            .collect();
        for result in results {
            result?;
        }
        Ok(())
    }

    fn up<T: Send, E: Send>(
        &self,
        sn: usize,
        context: &Context<'_>,
        op: &UpOp<'_, T, E>,
        subtree: Option<&SubtreeUp<'_, T, E>>,
    ) -> std::result::Result<T, E> {
        use rayon::prelude::*;
        if let Some(&t) = self.subtree_of.get(&sn) {
            let nodes = self.subtree(t);
            let blocks: Vec<&mut [f64]> = context.take_all(nodes);
            if let Some(whole) = subtree {
                return whole(t, blocks);
            }
            let mut stack: Vec<T> = Vec::new();
            for (&s, block) in nodes.iter().zip(blocks) {
                let own = stack.split_off(stack.len() - self.children(s).len());
                stack.push(op(s, block, own, Par::Seq)?);
            }
            // Postorder: every result but the root's was taken by its parent.
            if let Some(root) = stack.pop() {
                return Ok(root);
            }
        }
        let own: Vec<T> = self
            .children(sn)
            .par_iter()
            .map(|&c| self.up(c, context, op, subtree))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<std::result::Result<_, _>>()?;
        let par = if self.front_flops[sn] >= PARALLEL_FRONT_FLOPS {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let block = context.take(sn);
        op(sn, block, own, par)
    }

    /// Runs `op` on every supernode, parents before children, handing each the value its
    /// parent's `op` returned (`None` at roots): the top supernodes first, siblings in parallel,
    /// then each cut subtree sequentially.
    ///
    /// With `subtree`, a cut subtree is run by it instead, handed all its supernodes' blocks.
    fn downward(
        &self,
        blocks: Vec<&mut [f64]>,
        op: &DownOp<'_>,
        subtree: Option<&SubtreeDown<'_>>,
    ) {
        use rayon::prelude::*;
        let context = Context::new(blocks);
        self.roots
            .par_iter()
            .for_each(|&sn| self.down(sn, None, &context, op, subtree));
    }

    fn down(
        &self,
        sn: usize,
        parent: Option<&[f64]>,
        context: &Context<'_>,
        op: &DownOp<'_>,
        subtree: Option<&SubtreeDown<'_>>,
    ) {
        use rayon::prelude::*;
        if let Some(&t) = self.subtree_of.get(&sn) {
            let nodes = self.subtree(t);
            let blocks: Vec<&mut [f64]> = context.take_all(nodes);
            if let Some(whole) = subtree {
                whole(t, blocks, parent);
                return;
            }
            // Reverse postorder: every parent before its children. A parent's result lives
            // until its first child in postorder (the last one here) is done.
            let mut fronts: HashMap<usize, Vec<f64>> = HashMap::new();
            for (&s, block) in nodes.iter().zip(blocks).rev() {
                let from = match self.parent[s] {
                    Some(p) if s != sn => fronts.get(&p).map(Vec::as_slice),
                    _ => parent,
                };
                let front = op(s, block, from);
                if let Some(p) = self.parent[s].filter(|_| s != sn) {
                    if self.children(p).first() == Some(&s) {
                        fronts.remove(&p);
                    }
                }
                if !self.children(s).is_empty() {
                    fronts.insert(s, front);
                }
            }
            return;
        }
        let block = context.take(sn);
        let front = op(sn, block, parent);
        self.children(sn)
            .par_iter()
            .for_each(|&c| self.down(c, Some(&front), context, op, subtree));
    }

    /// Forward substitution at one front: the children's contributions added, the diagonal
    /// block solved, and the contribution −L_B y to the pattern rows returned (`below × k`).
    fn forward_front(
        &self,
        sn: usize,
        l_values: &[f64],
        k: usize,
        block: &mut [f64],
        children: Vec<Vec<f64>>,
    ) -> Vec<f64> {
        let width = self.width(sn);
        let below = self.below(sn);
        let mut out = vec![0.0; below * k];
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
                -1.0,
                Par::Seq,
            );
        }
        out
    }

    /// Backward substitution at one front: x_s = L_ssᵀ⁻¹ (y_s − L_Bᵀ x_B) with x_B gathered from
    /// the parent's front values; returns this front's values [x_s; x_B] (`height × k`) for its
    /// children (empty when it has none).
    fn backward_front(
        &self,
        sn: usize,
        l_values: &[f64],
        k: usize,
        block: &mut [f64],
        parent: Option<&[f64]>,
    ) -> Vec<f64> {
        let width = self.width(sn);
        let below = self.below(sn);
        let height = width + below;
        let mut x_below = vec![0.0; below * k];
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
    fn backward_dense(
        &self,
        sn: usize,
        l_values: &[f64],
        k: usize,
        block: &mut [f64],
        x_below: &[f64],
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
                -1.0,
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
    fn l_block<'a>(&self, sn: usize, l_values: &'a [f64]) -> faer::MatRef<'a, f64> {
        let width = self.width(sn);
        faer::MatRef::from_column_major_slice(
            &l_values[self.val_ptr[sn]..self.val_ptr[sn + 1]],
            width + self.below(sn),
            width,
        )
    }

    /// One front: assemble, factor the diagonal block, solve the block below it, and return the
    /// update matrix −L_B L_Bᵀ plus the children's contributions to the pattern rows.
    fn front(
        &self,
        sn: usize,
        block: &mut [f64],
        children: Vec<Update>,
        par: Par,
    ) -> std::result::Result<Update, FrontError> {
        let width = self.width(sn);
        let below = self.below(sn);
        let height = width + below;
        let mut update = self.update_matrix(below)?;
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (&c, u) in self.children(sn).iter().zip(&children) {
            let rel = &self.relative[self.row_ptr[c]..self.row_ptr[c + 1]];
            // Maximal runs of consecutive targets: each run is one contiguous slice addition.
            runs.clear();
            let mut start = 0;
            for k in 1..=rel.len() {
                if k == rel.len() || rel[k] != rel[k - 1] + 1 {
                    runs.push((start, k));
                    start = k;
                }
            }
            let mut first_run = 0;
            for (jc, &lc) in rel.iter().enumerate() {
                let lc = lc as usize;
                while runs[first_run].1 <= jc {
                    first_run += 1;
                }
                let column = u.col(jc);
                let (dst, shift) = if lc < width {
                    (&mut block[lc * height..(lc + 1) * height], 0)
                } else {
                    (update.col_mut(lc - width), width)
                };
                for &(a, b) in &runs[first_run..] {
                    let a = a.max(jc);
                    let to = rel[a] as usize - shift;
                    for (d, v) in dst[to..to + (b - a)].iter_mut().zip(&column[a..b]) {
                        *d += v;
                    }
                }
            }
        }
        for u in children {
            self.recycle(u);
        }
        if width <= SMALL_FRONT_WIDTH && height <= SMALL_FRONT_HEIGHT {
            small_front(block, width, &mut update.data[..below * below])
                .map_err(|c| FrontError::NonPositivePivot(c + self.begin[sn]))?;
            return Ok(update);
        }
        let l = MatMut::from_column_major_slice_mut(block, height, width);
        let (mut top, mut bottom) = l.split_at_row_mut(width);
        let req = cholesky_in_place_scratch::<f64>(width, par, Default::default());
        crate::pool::with_scratch(req, |stack| {
            cholesky_in_place(
                top.rb_mut(),
                Default::default(),
                par,
                stack,
                Default::default(),
            )
        })
        .map_err(
            |faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }| {
                FrontError::NonPositivePivot(index + self.begin[sn])
            },
        )?;
        if below > 0 {
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                top.rb(),
                bottom.rb_mut().transpose_mut(),
                par,
            );
            matmul(
                MatMut::from_column_major_slice_mut(
                    &mut update.data[..below * below],
                    below,
                    below,
                ),
                BlockStructure::TriangularLower,
                Accum::Add,
                bottom.rb(),
                BlockStructure::Rectangular,
                bottom.rb().transpose(),
                BlockStructure::Rectangular,
                -1.0,
                par,
            );
        }
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::factor::LltError;
    use faer::Side;

    use super::*;
    use crate::solve::Ordering;
    use crate::sparse::Symmetry;

    /// A test system: the k³ grid graph's weighted Laplacian + shift·I, each node expanded into
    /// `dofs` unknowns coupled by the SPD block I + 0.3·11ᵀ (a Kronecker product, so the unknowns
    /// of a node are indistinguishable — supervariables), stored as `symmetry`.
    struct System {
        structure: std::sync::Arc<Structure>,
        values: Vec<f64>,
    }

    fn grid3_system(k: usize, dofs: usize, shift: f64, symmetry: Symmetry) -> System {
        let node = |x: usize, y: usize, z: usize| x + k * (y + k * z);
        let mut laplacian: Vec<(usize, usize, f64)> = Vec::new();
        let mut degree = vec![shift; k * k * k];
        for z in 0..k {
            for y in 0..k {
                for x in 0..k {
                    let i = node(x, y, z);
                    for (dx, dy, dz) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
                        if x + dx < k && y + dy < k && z + dz < k {
                            let j = node(x + dx, y + dy, z + dz);
                            let w = 1.5 + 0.5 * ((laplacian.len() / 2) as f64).sin();
                            laplacian.push((i, j, -w));
                            laplacian.push((j, i, -w));
                            degree[i] += w;
                            degree[j] += w;
                        }
                    }
                }
            }
        }
        laplacian.extend(degree.iter().enumerate().map(|(i, &d)| (i, i, d)));
        let mut entries = Vec::new();
        for &(i, j, v) in &laplacian {
            for a in 0..dofs {
                for b in 0..dofs {
                    let (r, c) = (i * dofs + a, j * dofs + b);
                    if symmetry == Symmetry::Lower && r < c {
                        continue;
                    }
                    let block = if a == b { 1.3 } else { 0.3 };
                    entries.push((r, c, v * block));
                }
            }
        }
        let n = k * k * k * dofs;
        let pairs: Vec<(usize, usize)> = entries.iter().map(|&(r, c, _)| (r, c)).collect();
        let (structure, slot) = Structure::from_pairs(n, n, &pairs, symmetry).unwrap();
        let mut values = vec![0.0; structure.nnz()];
        for (&(_, _, v), &at) in entries.iter().zip(&slot) {
            values[at] += v;
        }
        System { structure, values }
    }

    /// faer's left-looking LLᵀ of the same analysis, in the same layout.
    fn faer_llt(
        structure: &Structure,
        values: &[f64],
        symbolic: &SymbolicCholesky<usize>,
    ) -> std::result::Result<Vec<f64>, usize> {
        let mut l = vec![0.0; symbolic.len_val()];
        let req = symbolic.factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default());
        let mut buffer = MemBuffer::new(req);
        symbolic
            .factorize_numeric_llt(
                &mut l,
                faer::sparse::SparseColMatRef::new(structure.faer_pattern(), values),
                Side::Lower,
                Default::default(),
                Par::Seq,
                MemStack::new(&mut buffer),
                Default::default(),
            )
            .map_err(|LltError::NonPositivePivot { index }| index)?;
        Ok(l)
    }

    fn cases() -> Vec<(&'static str, System, Ordering)> {
        vec![
            (
                "grid3 16, nested dissection",
                grid3_system(16, 1, 1.0, Symmetry::Full),
                Ordering::NestedDissection,
            ),
            (
                "grid3 14, AMD",
                grid3_system(14, 1, 1.0, Symmetry::Full),
                Ordering::Amd,
            ),
            (
                "grid3 8 × 3 unknowns per node (lower storage, supervariables)",
                grid3_system(8, 3, 0.5, Symmetry::Lower),
                Ordering::NestedDissection,
            ),
        ]
    }

    /// The multifrontal factor equals faer's left-looking one entry by entry (same layout, the
    /// same sums in another order), on a cut tree with parallel subtrees and top supernodes.
    #[test]
    fn matches_faer_left_looking_factor() {
        for (name, System { structure, values }, ordering) in cases() {
            let (symbolic, _) = super::super::ordering::symbolic(&structure, &ordering).unwrap();
            let plan = Plan::new(&structure, &symbolic).expect(name);
            assert!(
                plan.subtree_ptr.len() > 2 && plan.subtree_nodes.len() + 1 < plan.begin.len(),
                "{name}: the tree was not cut ({} subtrees, {} of {} supernodes in them)",
                plan.subtree_ptr.len() - 1,
                plan.subtree_nodes.len(),
                plan.begin.len() - 1
            );
            let expected = faer_llt(&structure, &values, &symbolic).unwrap();
            let mut l = vec![0.0; symbolic.len_val()];
            plan.factor(&values, &mut l).expect(name);
            // L's entries: each supernode's columns from their diagonal down (faer's kernels
            // leave workspace values above the diagonal of the diagonal block; nothing reads
            // them).
            let mut entries = Vec::new();
            for sn in 0..plan.begin.len() - 1 {
                let (w, h) = (plan.width(sn), plan.width(sn) + plan.below(sn));
                for c in 0..w {
                    entries.extend((c..h).map(|r| plan.val_ptr[sn] + c * h + r));
                }
            }
            let scale = entries
                .iter()
                .fold(0.0f64, |m, &e| m.max(expected[e].abs()));
            let diff = entries
                .iter()
                .fold(0.0f64, |m, &e| m.max((expected[e] - l[e]).abs()));
            assert!(entries.len() as f64 >= 0.6 * l.len() as f64);
            assert!(
                diff <= 1e-13 * scale,
                "{name}: max difference {diff:e} of {scale:e}"
            );
            // A second factorization reuses the recycled update buffers: same bits.
            let mut again = vec![0.0; l.len()];
            plan.factor(&values, &mut again).expect(name);
            assert!(again == l, "{name}: refactorization differs");
        }
    }

    /// The tree-parallel solves give faer's supernodal solve to rounding, for 1 column (whole
    /// subtrees over one work vector) and 3 (front by front).
    #[test]
    fn solves_match_faer() {
        use faer::sparse::linalg::cholesky::LltRef;
        for (name, System { structure, values }, ordering) in cases() {
            let (symbolic, _) = super::super::ordering::symbolic(&structure, &ordering).unwrap();
            let plan = Plan::new(&structure, &symbolic).expect(name);
            let mut l = vec![0.0; symbolic.len_val()];
            plan.factor(&values, &mut l).expect(name);
            let n = structure.nrows();
            for k in [1, 3] {
                let b = faer::Mat::<f64>::from_fn(n, k, |i, c| ((i * 7 + c * 3) as f64).sin());
                let mut expected = b.clone();
                let req = symbolic.solve_in_place_scratch::<f64>(k, Par::Seq);
                let mut buffer = MemBuffer::new(req);
                LltRef::new(&symbolic, &l).solve_in_place_with_conj(
                    faer::Conj::No,
                    expected.as_mut(),
                    Par::Seq,
                    MemStack::new(&mut buffer),
                );
                let mut x = b.clone();
                let permutation = symbolic.perm().map(|p| p.arrays().0);
                plan.solve_in_place(&l, permutation, x.as_mut());
                let scale = expected.norm_max();
                let diff = (&x - &expected).norm_max();
                assert!(
                    diff <= 1e-12 * scale,
                    "{name}, k = {k}: {diff:e} of {scale:e}"
                );
            }
        }
    }

    /// A matrix that is not positive definite fails at the same pivot as faer's factorization.
    #[test]
    fn non_positive_pivot_matches_faer() {
        let System { structure, values } = grid3_system(16, 1, -0.05, Symmetry::Full);
        let (symbolic, _) =
            super::super::ordering::symbolic(&structure, &Ordering::NestedDissection).unwrap();
        let plan = Plan::new(&structure, &symbolic).unwrap();
        let expected = faer_llt(&structure, &values, &symbolic).unwrap_err();
        let mut l = vec![0.0; symbolic.len_val()];
        let Err(FrontError::NonPositivePivot(found)) = plan.factor(&values, &mut l) else {
            panic!("L − 0.05 I factored");
        };
        assert_eq!(found, expected);
    }
}
