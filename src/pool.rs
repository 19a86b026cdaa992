//! Recycling of large `f64` buffers between evaluations.
//!
//! An optimizer loop allocates the same large vectors on every evaluation: assembled values, the
//! factor's values, X, Λ and the gradients. glibc serves allocations of 32 MiB and more (n ≥ 2^22
//! unknowns) with a fresh `mmap` every time and returns them with `munmap`, so each evaluation
//! pays a page fault per 4 KiB touched — measured at about half of a warm value-and-gradient call
//! for a chain with 2^22 unknowns. Buffers of at least [`MIN_POOLED_LEN`] values that the crate
//! frees (tape nodes, gradients, factors) are kept here instead, up to [`MAX_POOLED`] of them and
//! [`MAX_POOLED_BYTES`] in total, and handed out again for requests they fit (capacity between
//! the request and twice it).
//!
//! The pool holds memory after the last tape is dropped; [`crate::release_pooled_memory`] frees it.

use std::sync::Mutex;

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use nalgebra::DMatrix;

/// Smallest buffer (in `f64`s, 1 MiB) worth keeping: smaller ones are cheap for the allocator.
pub const MIN_POOLED_LEN: usize = 1 << 17;
/// Most buffers kept at once (the oldest is freed first).
pub const MAX_POOLED: usize = 16;
/// Most bytes kept in buffers, and separately in workspaces (1 GiB each; the oldest go first).
pub const MAX_POOLED_BYTES: usize = 1 << 30;

/// A bounded list of recycled buffers. The crate uses one process-wide instance ([`POOL`]); tests
/// make their own, so that what they assert never depends on other tests running at once.
struct BufferPool<T = f64>(Mutex<Vec<Vec<T>>>);

static POOL: BufferPool = BufferPool::new();
/// f32 buffers (single- and mixed-precision factors), under the same bounds, counted separately.
static POOL32: BufferPool<f32> = BufferPool::new();
/// faer workspaces (numeric factorization and solve scratch), with the request each was made for.
static SCRATCH: Mutex<Vec<(StackReq, MemBuffer)>> = Mutex::new(Vec::new());
/// Most workspaces kept at once.
const MAX_SCRATCH: usize = 4;

impl<T> BufferPool<T> {
    const fn new() -> Self {
        BufferPool(Mutex::new(Vec::new()))
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        // A panic while holding the lock cannot leave the list inconsistent (push/remove only).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pooled buffer with capacity for `len` values, if one fits, as it was recycled (its
    /// values kept, its length anything up to its capacity).
    fn take_as_is(&self, len: usize) -> Option<Vec<T>> {
        if len < MIN_POOLED_LEN {
            return None;
        }
        take_best(
            &mut self.list(),
            len * std::mem::size_of::<T>(),
            buffer_bytes,
            |_| true,
        )
    }

    /// A pooled buffer (emptied) with capacity for `len` values, if one fits.
    fn take(&self, len: usize) -> Option<Vec<T>> {
        let mut v = self.take_as_is(len)?;
        v.clear();
        Some(v)
    }

    /// Keeps `v` for reuse if it is large enough.
    fn recycle(&self, v: Vec<T>) {
        if v.capacity() >= MIN_POOLED_LEN {
            keep(&mut self.list(), v, MAX_POOLED, buffer_bytes);
        }
    }

    fn bytes(&self) -> usize {
        self.list().iter().map(buffer_bytes).sum()
    }

    fn release(&self) {
        drop(std::mem::take(&mut *self.list()));
    }
}

fn scratch() -> std::sync::MutexGuard<'static, Vec<(StackReq, MemBuffer)>> {
    SCRATCH.lock().unwrap_or_else(|e| e.into_inner())
}

fn buffer_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

fn scratch_bytes(s: &(StackReq, MemBuffer)) -> usize {
    s.0.size_bytes()
}

/// Removes and returns the smallest item of `list` that is `usable` and holds between `need` and
/// `2 · need` bytes.
fn take_best<T>(
    list: &mut Vec<T>,
    need: usize,
    bytes: impl Fn(&T) -> usize,
    usable: impl Fn(&T) -> bool,
) -> Option<T> {
    let best = list
        .iter()
        .enumerate()
        .filter(|(_, x)| (need..=2 * need).contains(&bytes(x)) && usable(x))
        .min_by_key(|(_, x)| bytes(x))
        .map(|(i, _)| i)?;
    Some(list.remove(best))
}

/// Appends `item` to `list`, first freeing the oldest items while the list holds `max_len` items or
/// the total would exceed [`MAX_POOLED_BYTES`]; an item larger than that bound is freed instead.
fn keep<T>(list: &mut Vec<T>, item: T, max_len: usize, bytes: impl Fn(&T) -> usize) {
    let size = bytes(&item);
    if size > MAX_POOLED_BYTES {
        return;
    }
    let mut total: usize = list.iter().map(&bytes).sum();
    while !list.is_empty() && (list.len() >= max_len || total + size > MAX_POOLED_BYTES) {
        total -= bytes(&list.remove(0));
    }
    list.push(item);
}

/// Runs `f` on a faer workspace that can hold `req`: a pooled one when one fits (at most twice
/// the size asked for), else a new one; workspaces of 1 MiB and more are kept afterwards.
/// Concurrent callers each get their own.
pub(crate) fn with_scratch<R>(req: StackReq, f: impl FnOnce(&mut MemStack) -> R) -> R {
    let size = req.size_bytes();
    let pooled = size >= MIN_POOLED_LEN * std::mem::size_of::<f64>();
    let found = pooled
        .then(|| {
            take_best(&mut scratch(), size, scratch_bytes, |(r, _)| {
                r.align_bytes() >= req.align_bytes()
            })
        })
        .flatten();
    let (held, mut buffer) = found.unwrap_or_else(|| (req, MemBuffer::new(req)));
    let result = f(MemStack::new(&mut buffer));
    if pooled {
        keep(&mut scratch(), (held, buffer), MAX_SCRATCH, scratch_bytes);
    }
    result
}

/// An empty vector with capacity for at least `len` values: a pooled buffer when one fits.
pub(crate) fn with_capacity(len: usize) -> Vec<f64> {
    take(len).unwrap_or_else(|| Vec::with_capacity(len))
}

/// A pooled buffer (emptied) with capacity for `len` values, if one fits.
pub(crate) fn take(len: usize) -> Option<Vec<f64>> {
    POOL.take(len)
}

/// `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f64> {
    let mut v = with_capacity(len);
    v.resize(len, 0.0);
    v
}

/// A copy of `data`.
pub(crate) fn copied(data: &[f64]) -> Vec<f64> {
    let mut v = with_capacity(data.len());
    v.extend_from_slice(data);
    v
}

/// A copy of a dense matrix.
pub(crate) fn matrix_copy(m: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_vec(m.nrows(), m.ncols(), copied(m.as_slice()))
}

/// An `r × c` zero matrix.
pub(crate) fn matrix_zeros(r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_vec(r, c, zeroed(r * c))
}

/// Hands a buffer back for reuse (kept only if it is large enough).
pub(crate) fn recycle(v: Vec<f64>) {
    POOL.recycle(v);
}

/// A pooled buffer with capacity for `len` values, if one fits, with the values it held: for
/// callers that overwrite what they use (a factor whose fronts clear their own blocks).
pub(crate) fn take_as_is(len: usize) -> Option<Vec<f64>> {
    POOL.take_as_is(len)
}

/// [`take_as_is`] for f32 buffers.
pub(crate) fn take_single_as_is(len: usize) -> Option<Vec<f32>> {
    POOL32.take_as_is(len)
}

/// Hands an f32 buffer back for reuse (kept only if it is large enough).
pub(crate) fn recycle_single(v: Vec<f32>) {
    POOL32.recycle(v);
}

/// Hands a dense matrix's storage back for reuse.
pub(crate) fn recycle_matrix(m: DMatrix<f64>) {
    recycle(m.data.into());
}

/// Frees every pooled buffer and workspace; returns how many bytes were released.
pub(crate) fn release() -> usize {
    let bytes = pooled_bytes();
    POOL.release();
    POOL32.release();
    drop(std::mem::take(&mut *scratch()));
    bytes
}

/// Bytes currently pooled (buffers and workspaces).
pub(crate) fn pooled_bytes() -> usize {
    POOL.bytes() + POOL32.bytes() + scratch().iter().map(scratch_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a private pool: other tests recycle into and take from the process-wide one at the
    /// same time, so nothing about its contents can be asserted.
    #[test]
    fn reuses_a_fitting_buffer_and_refuses_an_oversized_one() {
        let pool: BufferPool = BufferPool::new();
        let big = vec![0.5; 3 * MIN_POOLED_LEN];
        let big_ptr = big.as_ptr();
        pool.recycle(big);
        assert_eq!(pool.bytes(), 3 * MIN_POOLED_LEN * 8);
        // 3× larger than the request: not handed out.
        assert!(pool.take(MIN_POOLED_LEN).is_none());
        // Within 2× of the request: reused, and emptied.
        let fits = pool.take(2 * MIN_POOLED_LEN).unwrap();
        assert_eq!((fits.as_ptr(), fits.len()), (big_ptr, 0));
        assert_eq!(pool.bytes(), 0);
        // Buffers below the threshold are not kept.
        pool.recycle(vec![1.0; 16]);
        assert_eq!(pool.bytes(), 0);
        pool.recycle(fits);
        pool.release();
        assert_eq!(pool.bytes(), 0);
    }

    /// The oldest buffers go first once [`MAX_POOLED`] are kept.
    #[test]
    fn keeps_at_most_max_pooled_buffers() {
        let pool: BufferPool = BufferPool::new();
        for _ in 0..MAX_POOLED + 3 {
            pool.recycle(Vec::with_capacity(MIN_POOLED_LEN));
        }
        assert_eq!(pool.bytes(), MAX_POOLED * MIN_POOLED_LEN * 8);
    }

    /// The crate-wide helpers hand out correct contents whatever the shared pool holds.
    #[test]
    fn zeroed_and_copied_buffers_have_the_right_contents() {
        recycle(vec![7.0; 2 * MIN_POOLED_LEN]);
        let z = zeroed(2 * MIN_POOLED_LEN);
        assert!(z.len() == 2 * MIN_POOLED_LEN && z.iter().all(|&x| x == 0.0));
        let m = matrix_copy(&DMatrix::from_fn(MIN_POOLED_LEN, 2, |i, j| (i + j) as f64));
        assert_eq!((m[(7, 1)], m.shape()), (8.0, (MIN_POOLED_LEN, 2)));
        recycle_matrix(m);
    }
}
