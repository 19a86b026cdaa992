//! Numeric phase: [`Plan::factor`] writes L into faer's value layout, front by front
//! (assembly from A and the children's update matrices, dense LLᵀ of the diagonal block, the
//! off-diagonal solve, the update matrix), small fronts by a scalar kernel, large ones by faer's
//! dense kernels.
//!
//! Contract: `l_values` is `symbolic.len_val()` long, its contents are not read (each front zeroes
//! its own block in its task, in parallel, before assembling it); the caller's [`Workspace`]
//! (made by [`Plan::workspace`], at most [`Plan::workspace_capacity`] values kept) supplies one
//! update matrix per live front and keeps finished ones for later fronts and factorizations. Failure:
//! [`FrontError::NonPositivePivot`] with the permuted column, or [`FrontError::OutOfMemory`] for an
//! update matrix that cannot be allocated; L is then partially written and must be discarded.

use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, Par};

use super::*;

/// A small front in place: the `height × width` column-major `block` (diagonal block on top)
/// becomes [L_ss; L_B] by right-looking Cholesky, and `update` (`below × below`, lower triangle)
/// receives −L_B L_Bᵀ. Fails at the front column of the first pivot that is not positive.
pub(super) fn small_front<S: Real>(
    block: &mut [S],
    width: usize,
    update: &mut [S],
) -> Result<(), usize> {
    let height = block.len() / width.max(1);
    let below = height - width;
    for c in 0..width {
        let (done, rest) = block.split_at_mut((c + 1) * height);
        let column = &mut done[c * height..];
        let pivot = column[c];
        // A NaN pivot fails too.
        if pivot.partial_cmp(&S::default()) != Some(std::cmp::Ordering::Greater) {
            return Err(c);
        }
        let d = pivot.sqrt();
        column[c] = d;
        let inv = S::from_f64(1.0) / d;
        for v in &mut column[c + 1..] {
            *v *= inv;
        }
        // The columns right of c in the front, rows from their diagonal down.
        for (k, later) in rest.chunks_exact_mut(height).enumerate() {
            let j = c + 1 + k;
            axpy(&mut later[j..], S::default() - column[j], &column[j..]);
        }
    }
    for c in 0..width {
        let lb = &block[c * height + width..(c + 1) * height];
        for (j, &a) in lb.iter().enumerate() {
            axpy(
                &mut update[j * below + j..(j + 1) * below],
                S::default() - a,
                &lb[j..],
            );
        }
    }
    Ok(())
}

/// The numeric phase's reusable workspace: buffers of finished update matrices, handed to later
/// fronts and later factorizations. The caller owns it (beside the plan it was sized for, see
/// [`Plan::workspace`]); the plan itself holds no mutable state. Shared by the parallel fronts of
/// one factorization, hence the lock (taken once per large front, never in the small-front path).
pub(crate) struct Workspace<S = f64> {
    spare: std::sync::Mutex<Vec<Vec<S>>>,
    /// At most this many values are kept.
    capacity: usize,
}

impl<S: Real> Workspace<S> {
    /// A zeroed (lower triangle) update matrix, from the recycled buffers when one fits: fresh
    /// large allocations cost page faults that showed up as a quarter of a 3D factorization.
    fn update_matrix(&self, dim: usize) -> std::result::Result<Update<S>, FrontError> {
        let len = dim * dim;
        let mut data = if len >= RECYCLED_LEN {
            let mut spare = self.lock();
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
                    S::pooled(len).unwrap_or_default()
                }
            }
        } else {
            Vec::new()
        };
        if data.len() < len {
            data.clear();
            data.try_reserve_exact(len)
                .map_err(|_| FrontError::OutOfMemory(len))?;
            data.resize(len, S::default());
        } else {
            for j in 0..dim {
                data[j * dim + j..(j + 1) * dim].fill(S::default());
            }
        }
        Ok(Update { dim, data })
    }

    /// Keeps a large update matrix's buffer for later fronts, up to the workspace's capacity.
    fn recycle(&self, update: Update<S>) {
        if update.data.len() < RECYCLED_LEN {
            return;
        }
        let mut spare = self.lock();
        let held: usize = spare.iter().map(Vec::len).sum();
        if held + update.data.len() <= self.capacity {
            spare.push(update.data);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<S>>> {
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The values held now (for tests of reuse).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.lock().iter().map(Vec::len).sum()
    }
}

impl Plan {
    /// How many recycled update values a workspace for this plan keeps: a quarter of the
    /// factor's size (more bought no measurable time and cost 135 MB of peak memory on 48³).
    /// The scratch-size twin of [`Plan::factor`]: no buffer is allocated until a front needs it.
    pub(crate) fn workspace_capacity(&self) -> usize {
        self.val_ptr.last().copied().unwrap_or(0) / 4
    }

    /// An empty workspace sized for this plan, to pass to every [`Plan::factor`] with it.
    pub(crate) fn workspace<S>(&self) -> Workspace<S> {
        Workspace {
            spare: Default::default(),
            capacity: self.workspace_capacity(),
        }
    }

    /// Runs the numeric LLᵀ of the values `a_values` (in the structure's storage order) into
    /// `l_values` (faer's supernodal layout, `len_val()` entries, whatever they hold: each front
    /// zeroes its block, adds A's entries and then its children's updates — in its own task, so
    /// the factor's memory is cleared and first touched in parallel, right before its use). A
    /// non-positive pivot is reported at its permuted column, as faer does. An f32 factor reads
    /// A's values rounded to f32.
    pub(crate) fn factor<S: Real>(
        &self,
        a_values: &[f64],
        l_values: &mut [S],
        work: &Workspace<S>,
    ) -> std::result::Result<(), FrontError> {
        let blocks = split_blocks(l_values, &self.val_ptr);
        self.upward(
            blocks,
            &|sn, block, children, par| self.front(sn, block, a_values, children, par, work),
            None,
        )
    }

    /// One front: assemble, factor the diagonal block, solve the block below it, and return the
    /// update matrix −L_B L_Bᵀ plus the children's contributions to the pattern rows.
    pub(super) fn front<S: Real>(
        &self,
        sn: usize,
        block: &mut [S],
        a_values: &[f64],
        children: Vec<Update<S>>,
        par: Par,
        work: &Workspace<S>,
    ) -> std::result::Result<Update<S>, FrontError> {
        let width = self.width(sn);
        let below = self.below(sn);
        let height = width + below;
        block.fill(S::default());
        for &(k, at) in &self.a_entries[self.a_ptr[sn]..self.a_ptr[sn + 1]] {
            block[at] += S::from_f64(a_values[k]);
        }
        let mut update = work.update_matrix(below)?;
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
                    for (d, &v) in dst[to..to + (b - a)].iter_mut().zip(&column[a..b]) {
                        *d += v;
                    }
                }
            }
        }
        for u in children {
            work.recycle(u);
        }
        if width <= SMALL_FRONT_WIDTH && height <= SMALL_FRONT_HEIGHT {
            small_front(block, width, &mut update.data[..below * below])
                .map_err(|c| FrontError::NonPositivePivot(c + self.begin[sn]))?;
            return Ok(update);
        }
        let l = MatMut::from_column_major_slice_mut(block, height, width);
        let (mut top, mut bottom) = l.split_at_row_mut(width);
        let req = cholesky_in_place_scratch::<S>(width, par, Default::default());
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
                S::from_f64(-1.0),
                par,
            );
        }
        Ok(update)
    }
}
