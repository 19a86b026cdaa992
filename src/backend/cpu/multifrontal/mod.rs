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
//! - large update matrices are recycled between fronts and factorizations through the caller's
//!   [`Workspace`] (the plan itself is immutable; fresh allocations of
//!   tens of MB cost page faults that were a quarter of an elasticity factorization).
//!
//! The solves with such a factor run over the same cut tree ([`Plan::solve_in_place`]): forward
//! substitution bottom-up, each front passing a contribution vector to its parent; backward
//! substitution top-down, each front reading its pattern rows from its parent's front values.
//!
//! The cut depends only on the predicted flops, never on the thread count, and every product
//! runs the same operations in the same order, so factors and solutions are bit-identical on any
//! number of threads.

use std::collections::HashMap;

use faer::Par;

/// Subtrees above this share of the total flops are split into their children.
const SPLIT_SHARE: f64 = 1.0 / 16.0;
/// At most this many parallel subtrees.
const MAX_SUBTREES: usize = 256;
/// A front whose dense work is above this many flops uses the rayon pool's threads.
const PARALLEL_FRONT_FLOPS: f64 = 2e7;

/// The factor's scalar: f64 (the default) or f32 (half the memory and twice the SIMD width, for
/// [`Precision::Mixed`](crate::Precision::Mixed) and [`Precision::F32`](crate::Precision::F32)).
/// faer's dense kernels are generic over it; the pool hooks recycle large buffers of either
/// type ([`crate::pool`]).
pub(crate) trait Real:
    faer::traits::RealField + Copy + Default + Send + Sync + 'static
{
    /// The value as an f64.
    fn to_f64(self) -> f64;
    /// `v` rounded to this type.
    fn from_f64(v: f64) -> Self;
    /// √self.
    fn sqrt(self) -> Self;
    /// A recycled buffer with capacity for `len` values, if the pool has one, with the values
    /// it held (any length up to its capacity).
    fn pooled(_len: usize) -> Option<Vec<Self>> {
        None
    }
    /// Hands a buffer back to the pool (f64) or frees it.
    fn recycle(_v: Vec<Self>) {}
    /// The workspace of `mf` for factors of this type.
    fn workspace(mf: &Multifrontal) -> &Workspace<Self>;
    /// Machine epsilon of this type, as an f64.
    const EPSILON: f64;
    /// f64 values as this type: borrowed for f64, a rounded copy for f32.
    fn cast(values: &[f64]) -> std::borrow::Cow<'_, [Self]>;
    /// `len` zeros, from the pool when one fits.
    fn zeroed(len: usize) -> Vec<Self> {
        let mut v = Self::pooled(len).unwrap_or_default();
        v.clear();
        v.resize(len, Self::default());
        v
    }
}

impl Real for f64 {
    fn workspace(mf: &Multifrontal) -> &Workspace<Self> {
        &mf.work
    }
    const EPSILON: f64 = f64::EPSILON;
    fn cast(values: &[f64]) -> std::borrow::Cow<'_, [Self]> {
        std::borrow::Cow::Borrowed(values)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn pooled(len: usize) -> Option<Vec<Self>> {
        crate::pool::take_as_is(len)
    }
    fn recycle(v: Vec<Self>) {
        crate::pool::recycle(v)
    }
}

impl Real for f32 {
    fn workspace(mf: &Multifrontal) -> &Workspace<Self> {
        &mf.work_single
    }
    const EPSILON: f64 = f32::EPSILON as f64;
    fn cast(values: &[f64]) -> std::borrow::Cow<'_, [Self]> {
        std::borrow::Cow::Owned(values.iter().map(|&v| v as f32).collect())
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn pooled(len: usize) -> Option<Vec<Self>> {
        crate::pool::take_single_as_is(len)
    }
    fn recycle(v: Vec<Self>) {
        crate::pool::recycle_single(v)
    }
}

/// A bottom-up step: (supernode, its block, its children's results, parallelism) → its result.
type UpOp<'a, T, E, S> =
    dyn Fn(usize, &mut [S], Vec<T>, Par) -> std::result::Result<T, E> + Sync + 'a;
/// A top-down step: (supernode, its block, its parent's result) → its result.
type DownOp<'a, S> = dyn Fn(usize, &mut [S], Option<&[S]>) -> Vec<S> + Sync + 'a;
/// A whole cut subtree bottom-up: (subtree, its supernodes' blocks in its postorder) → its
/// root's result.
type SubtreeUp<'a, T, E, S> = dyn Fn(usize, Vec<&mut [S]>) -> std::result::Result<T, E> + Sync + 'a;
/// A whole cut subtree top-down: (subtree, its supernodes' blocks in its postorder, the root's
/// parent's result).
type SubtreeDown<'a, S> = dyn Fn(usize, Vec<&mut [S]>, Option<&[S]>) + Sync + 'a;

/// Fronts at most this wide and this high are factored by [`small_front`]: most supernodes of a
/// 2D factor are one to three columns wide, where the dense kernels' dispatch costs more than
/// the arithmetic.
const SMALL_FRONT_WIDTH: usize = 4;
const SMALL_FRONT_HEIGHT: usize = 64;

/// `data` cut into one block per supernode at `ptr` (`ptr[s]..ptr[s + 1]`).
fn split_blocks<'a, S>(data: &'a mut [S], ptr: &[usize]) -> Vec<&'a mut [S]> {
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
struct Context<'l, S> {
    blocks: std::sync::Mutex<Vec<Option<&'l mut [S]>>>,
}

impl<'l, S> Context<'l, S> {
    fn new(blocks: Vec<&'l mut [S]>) -> Self {
        Context {
            blocks: std::sync::Mutex::new(blocks.into_iter().map(Some).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<&'l mut [S]>>> {
        self.blocks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, sn: usize) -> &'l mut [S] {
        self.lock()[sn].take().unwrap_or_default()
    }

    fn take_all(&self, nodes: &[usize]) -> Vec<&'l mut [S]> {
        let mut all = self.lock();
        nodes
            .iter()
            .map(|&sn| all[sn].take().unwrap_or_default())
            .collect()
    }
}

/// A front's update matrix: `dim × dim`, column-major, only the lower triangle meaningful.
#[derive(Default)]
struct Update<S> {
    dim: usize,
    data: Vec<S>,
}

impl<S> Update<S> {
    fn col(&self, j: usize) -> &[S] {
        &self.data[j * self.dim..(j + 1) * self.dim]
    }
    fn col_mut(&mut self, j: usize) -> &mut [S] {
        &mut self.data[j * self.dim..(j + 1) * self.dim]
    }
}

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
/// A plan with the workspace its factorizations share: what the Cholesky backend keeps beside a
/// symbolic analysis.
pub(crate) struct Multifrontal {
    /// The immutable symbolic plan.
    pub(crate) plan: Plan,
    /// The numeric phase's recycled buffers, sized by [`Plan::workspace`].
    pub(crate) work: Workspace,
    /// The same for f32 factorizations (empty until one runs).
    pub(crate) work_single: Workspace<f32>,
}

impl Multifrontal {
    /// The plan of `symbolic` with an empty workspace; `None` when the tree does not suit it.
    pub(crate) fn new(
        structure: &crate::sparse::Structure,
        symbolic: &faer::sparse::linalg::cholesky::SymbolicCholesky<usize>,
    ) -> Option<Self> {
        let plan = Plan::new(structure, symbolic)?;
        let work = plan.workspace();
        let work_single = plan.workspace();
        Some(Multifrontal {
            plan,
            work,
            work_single,
        })
    }
}

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
    /// A's stored entries by the supernode whose block they go to, as ranges of `a_entries`
    /// (`n_supernodes + 1` offsets).
    a_ptr: Vec<usize>,
    /// (index of the stored entry in A's values, its offset in the supernode's block), in the
    /// stored order within each supernode; entries above the diagonal of a full storage are not
    /// listed (their mirror below it is).
    a_entries: Vec<(usize, usize)>,
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
}

impl Plan {
    fn width(&self, sn: usize) -> usize {
        self.begin[sn + 1] - self.begin[sn]
    }

    fn below(&self, sn: usize) -> usize {
        self.row_ptr[sn + 1] - self.row_ptr[sn]
    }

    fn children(&self, sn: usize) -> &[usize] {
        &self.children[self.child_ptr[sn]..self.child_ptr[sn + 1]]
    }

    /// Cut subtree `t`'s supernodes in postorder (root last).
    fn subtree(&self, t: usize) -> &[usize] {
        &self.subtree_nodes[self.subtree_ptr[t]..self.subtree_ptr[t + 1]]
    }
}

/// y ← y + a·x.
#[inline(always)]
fn axpy<S: Real>(y: &mut [S], a: S, x: &[S]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// x·y with four partial sums (vectorizable; a fixed order, so the same bits on every run).
#[inline(always)]
fn dot<S: Real>(x: &[S], y: &[S]) -> S {
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let mut tail = S::default();
    for (&a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        tail += a * b;
    }
    let mut acc = [S::default(); 4];
    for (a, b) in xc.zip(yc) {
        for l in 0..4 {
            acc[l] += a[l] * b[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

mod inverse;
mod numeric;
pub(crate) use numeric::Workspace;
mod schedule;
mod solve;
mod symbolic;
#[cfg(test)]
mod tests;
