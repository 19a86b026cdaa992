//! Selected inversion of a Cholesky (LLᵀ) or LDLᵀ factor: Z = A⁻¹ on the pattern of L, by the
//! supernodal Takahashi / Erisman–Tinney recurrences, never a dense inverse.
//!
//! For a supernode with diagonal block L_D (w × w; unit lower with D on its diagonal for LDLᵀ),
//! below-diagonal block L_B (m × w) and pattern rows R (all in ancestor supernodes, a clique of
//! the filled graph, so Z_RR lies on L's pattern and is already computed when the supernodes are
//! visited from the root down):
//!
//! ```text
//!   Ŀ    = L_B L_D⁻¹
//!   Z_BD = −Z_RR Ŀ
//!   Z_DD = L_D⁻ᵀ D⁻¹ L_D⁻¹ − Ŀᵀ Z_BD          (D = I for LLᵀ)
//! ```
//!
//! Z is written in L's own value layout (faer's supernodal blocks, or a simplicial factor's
//! columns seen as one-column supernodes) and read at A's stored entries through the ordering.
//! The gradient of log det A with respect to A's stored values is exactly that read-out, so the
//! log-determinant node costs one selected inversion after its factorization.

use faer::sparse::linalg::cholesky::{SymbolicCholesky, SymbolicCholeskyRaw};

use super::cholesky::Kind;
use crate::error::{Error, Result};
use crate::sparse::Structure;

/// The factor as supernodes, whatever faer's layout: column ranges, pattern rows below each
/// diagonal block, and where each block's values start (column-major, leading dimension
/// width + pattern rows).
struct Supernodes {
    begin: Vec<usize>,
    row_ptr: Vec<usize>,
    rows: Vec<usize>,
    val_ptr: Vec<usize>,
    /// The supernode of each (permuted) column.
    of_column: Vec<usize>,
}

impl Supernodes {
    fn new(symbolic: &SymbolicCholesky<usize>) -> Self {
        let (begin, row_ptr, rows, val_ptr) = match symbolic.raw() {
            SymbolicCholeskyRaw::Supernodal(s) => {
                let n = s.nrows();
                let begin: Vec<usize> = s.supernode_begin().iter().copied().chain([n]).collect();
                (
                    begin,
                    s.col_ptr_for_row_idx().to_vec(),
                    s.row_idx().to_vec(),
                    s.col_ptr_for_val().to_vec(),
                )
            }
            SymbolicCholeskyRaw::Simplicial(s) => {
                // Column j: its diagonal at cp[j], the rows below after it (ascending).
                let (cp, ri) = (s.col_ptr(), s.row_idx());
                let n = s.nrows();
                let mut row_ptr = Vec::with_capacity(n + 1);
                let mut rows = Vec::with_capacity(ri.len().saturating_sub(n));
                row_ptr.push(0);
                for j in 0..n {
                    rows.extend_from_slice(&ri[cp[j] + 1..cp[j + 1]]);
                    row_ptr.push(rows.len());
                }
                ((0..=n).collect(), row_ptr, rows, cp.to_vec())
            }
        };
        let mut of_column = vec![0; begin.last().copied().unwrap_or(0)];
        for s in 0..begin.len() - 1 {
            of_column[begin[s]..begin[s + 1]].fill(s);
        }
        Supernodes {
            begin,
            row_ptr,
            rows,
            val_ptr,
            of_column,
        }
    }

    fn count(&self) -> usize {
        self.begin.len() - 1
    }

    fn width(&self, s: usize) -> usize {
        self.begin[s + 1] - self.begin[s]
    }

    fn pattern(&self, s: usize) -> &[usize] {
        &self.rows[self.row_ptr[s]..self.row_ptr[s + 1]]
    }

    /// Offset in the value layout of entry (r, c), r ≥ c (permuted indices), if it is on L's
    /// pattern.
    fn offset(&self, r: usize, c: usize) -> Option<usize> {
        let s = self.of_column[c];
        let (w, b) = (self.width(s), self.begin[s]);
        let ld = w + self.pattern(s).len();
        let row = if r < b + w {
            r - b
        } else {
            w + self.pattern(s).binary_search(&r).ok()?
        };
        Some(self.val_ptr[s] + (c - b) * ld + row)
    }
}

/// A front whose dense work is above this many flops uses the rayon pool's threads.
const PARALLEL_FLOPS: f64 = 2e7;

/// Z = A⁻¹ on the pattern of L, in L's value layout, for the factor `l` of `kind`.
///
/// # Errors
/// [`Error::OutOfMemory`] when Z's values cannot be allocated; [`Error::Singular`] for a zero
/// pivot (not produced by a successful factorization).
pub(crate) fn selected_inverse(
    symbolic: &SymbolicCholesky<usize>,
    l: &[f64],
    kind: Kind,
) -> Result<Vec<f64>> {
    let sn = Supernodes::new(symbolic);
    let mut z = Vec::new();
    z.try_reserve_exact(l.len())
        .map_err(|_| Error::OutOfMemory {
            what: "the selected inverse".into(),
            reason: format!("{} values", l.len()),
        })?;
    z.resize(l.len(), 0.0);
    let mut scratch = Scratch::default();
    for s in (0..sn.count()).rev() {
        let (w, at) = (sn.width(s), sn.val_ptr[s]);
        let ld = w + sn.pattern(s).len();
        let block = &l[at..at + ld * w];
        if let Some(j) = (0..w).find(|&j| block[j * ld + j] == 0.0) {
            return Err(Error::Singular {
                column: None,
                reason: format!("zero pivot at factor column {}", sn.begin[s] + j),
            });
        }
        if w == 1 {
            column(&sn, &mut z, s, block, kind);
        } else {
            supernode(&sn, &mut z, s, block, kind, &mut scratch);
        }
    }
    Ok(z)
}

/// Buffers reused from one supernode to the next (from the crate's pool, and back to it).
#[derive(Default)]
pub(crate) struct Scratch {
    lhat: Vec<f64>,
    z_rr: Vec<f64>,
    inv: Vec<f64>,
    scaled: Vec<f64>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for v in [
            &mut self.lhat,
            &mut self.z_rr,
            &mut self.inv,
            &mut self.scaled,
        ] {
            crate::pool::recycle(std::mem::take(v));
        }
    }
}

fn sized(v: &mut Vec<f64>, len: usize) -> &mut [f64] {
    if v.capacity() < len {
        crate::pool::recycle(std::mem::replace(v, crate::pool::with_capacity(len)));
    }
    v.clear();
    v.resize(len, 0.0);
    v
}

/// A one-column supernode (most of a 2D factor): with l the column below the pivot p (d = p for
/// LDLᵀ, p² for LLᵀ; ŀ = l / p for LLᵀ, l itself for LDLᵀ), z_B = −Z_RR ŀ by one walk over
/// the pattern's columns (Z_RR never formed) and z_pp = 1/d − ŀᵀ z_B.
fn column(sn: &Supernodes, z: &mut [f64], s: usize, block: &[f64], kind: Kind) {
    let pattern = sn.pattern(s);
    let m = pattern.len();
    let p = block[0];
    let (d, lhat): (f64, Vec<f64>) = match kind {
        Kind::Llt => (p * p, block[1..].iter().map(|v| v / p).collect()),
        Kind::Ldlt => (p, block[1..].to_vec()),
    };
    let mut z_b = vec![0.0; m];
    for b in 0..m {
        let c = pattern[b];
        let t = sn.of_column[c];
        let (w, start) = (sn.width(t), sn.begin[t]);
        let below = sn.pattern(t);
        let col = sn.val_ptr[t] + (c - start) * (w + below.len());
        let mut q = 0;
        for a in b..m {
            let r = pattern[a];
            let row = if r < start + w {
                r - start
            } else {
                while below[q] < r {
                    q += 1;
                }
                w + q
            };
            let v = z[col + row];
            z_b[a] -= v * lhat[b];
            if a != b {
                z_b[b] -= v * lhat[a];
            }
        }
    }
    let at = sn.val_ptr[s];
    let z_pp = 1.0 / d - lhat.iter().zip(&z_b).map(|(a, b)| a * b).sum::<f64>();
    z[at] = z_pp;
    z[at + 1..at + 1 + m].copy_from_slice(&z_b);
}

/// A wider supernode: Z_RR gathered from the blocks of its pattern rows' supernodes, then
/// [`front_inverse`].
fn supernode(
    sn: &Supernodes,
    z: &mut [f64],
    s: usize,
    block: &[f64],
    kind: Kind,
    scratch: &mut Scratch,
) {
    let (w, pattern) = (sn.width(s), sn.pattern(s));
    let (m, ld, at) = (pattern.len(), w + pattern.len(), sn.val_ptr[s]);
    let mut z_rr = std::mem::take(&mut scratch.z_rr);
    gather(sn, z, pattern, sized(&mut z_rr, m * m));
    front_inverse(block, w, kind, &z_rr, &mut z[at..at + ld * w], scratch);
    scratch.z_rr = z_rr;
}

/// One supernode's selected inverse from its factor block (`block`: ld × w, ld = w + m,
/// column-major, L_D over L_B) and Z_RR (m × m, column-major, full): writes Z_DD (lower
/// triangle) over Z_BD into `out` (ld × w, L's layout). faer's dense kernels, on the rayon pool
/// for large fronts, with the flops of LAPACK's `potri` for the diagonal block (a triangular
/// inverse, then the lower half of a triangular product) and only the lower half of
/// Ŀᵀ Z_BD: what is left at full price is the one product Z_RR Ŀ.
pub(crate) fn front_inverse(
    block: &[f64],
    w: usize,
    kind: Kind,
    z_rr: &[f64],
    out: &mut [f64],
    scratch: &mut Scratch,
) {
    use faer::linalg::matmul::matmul;
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure as B};
    use faer::linalg::triangular_inverse as inverse;
    use faer::linalg::triangular_solve as tri;
    use faer::reborrow::{Reborrow, ReborrowMut};
    use faer::{Accum, MatMut, MatRef, Par};
    let ld = block.len() / w.max(1);
    let m = ld - w;
    let flops = 2.0 * (m * m * w) as f64 + (m * w * w) as f64 + (w * w * w) as f64;
    let par = if flops > PARALLEL_FLOPS {
        Par::rayon(0)
    } else {
        Par::Seq
    };
    let factor = MatRef::from_column_major_slice_with_stride(block, ld, w, ld);
    let l_d = factor.subrows(0, w);
    let l_b = factor.subrows(w, m);
    let mut out = MatMut::from_column_major_slice_with_stride_mut(out, ld, w, ld);
    // X = L_D⁻¹ (lower triangular; unit diagonal for LDLᵀ), then Z_DD = Xᵀ D⁻¹ X.
    let inv = sized(&mut scratch.inv, w * w);
    let mut inv = MatMut::from_column_major_slice_mut(inv, w, w);
    match kind {
        Kind::Llt => inverse::invert_lower_triangular(inv.rb_mut(), l_d, par),
        Kind::Ldlt => {
            inverse::invert_unit_lower_triangular(inv.rb_mut(), l_d, par);
            for j in 0..w {
                inv[(j, j)] = 1.0;
            }
        }
    }
    let scaled = match kind {
        Kind::Llt => inv.rb(),
        Kind::Ldlt => {
            let scaled = sized(&mut scratch.scaled, w * w);
            let mut scaled = MatMut::from_column_major_slice_mut(scaled, w, w);
            for j in 0..w {
                for i in j..w {
                    scaled[(i, j)] = inv[(i, j)] / l_d[(i, i)];
                }
            }
            MatRef::from_column_major_slice(&scratch.scaled, w, w)
        }
    };
    let (mut z_dd, mut z_bd) = out.rb_mut().split_at_row_mut(w);
    tri_matmul(
        z_dd.rb_mut(),
        B::TriangularLower,
        Accum::Replace,
        inv.rb().transpose(),
        B::TriangularUpper,
        scaled,
        B::TriangularLower,
        1.0,
        par,
    );
    if m > 0 {
        // Ŀ = L_B L_D⁻¹: L_Dᵀ Ŀᵀ = L_Bᵀ.
        let lhat = sized(&mut scratch.lhat, m * w);
        let mut lhat = MatMut::from_column_major_slice_mut(lhat, m, w);
        lhat.copy_from(l_b);
        match kind {
            Kind::Llt => tri::solve_upper_triangular_in_place(
                l_d.transpose(),
                lhat.rb_mut().transpose_mut(),
                par,
            ),
            Kind::Ldlt => tri::solve_unit_upper_triangular_in_place(
                l_d.transpose(),
                lhat.rb_mut().transpose_mut(),
                par,
            ),
        }
        let z_rr = MatRef::from_column_major_slice(z_rr, m, m);
        matmul(z_bd.rb_mut(), Accum::Replace, z_rr, lhat.rb(), -1.0, par);
        // Ŀᵀ Z_BD = −Ŀᵀ Z_RR Ŀ is symmetric: its lower half is enough.
        tri_matmul(
            z_dd.rb_mut(),
            B::TriangularLower,
            Accum::Add,
            lhat.rb().transpose(),
            B::Rectangular,
            z_bd.rb(),
            B::Rectangular,
            -1.0,
            par,
        );
    }
}

/// Z_RR for the ascending pattern rows R of one supernode, from the (already computed) blocks of
/// their supernodes: column R[b]'s entries at rows R[a] ≥ R[b] are in R[b]'s supernode, in its
/// diagonal block or its pattern (R is a clique of the filled graph).
fn gather(sn: &Supernodes, z: &[f64], pattern: &[usize], out: &mut [f64]) {
    let m = pattern.len();
    for b in 0..m {
        let c = pattern[b];
        let t = sn.of_column[c];
        let (w, start) = (sn.width(t), sn.begin[t]);
        let below = sn.pattern(t);
        let ld = w + below.len();
        let col = sn.val_ptr[t] + (c - start) * ld;
        let mut p = 0;
        for a in b..m {
            let r = pattern[a];
            let row = if r < start + w {
                r - start
            } else {
                // Both lists ascend: advance through the pattern of t.
                while below[p] < r {
                    p += 1;
                }
                w + p
            };
            let v = z[col + row];
            out[b * m + a] = v;
            out[a * m + b] = v;
        }
    }
}

/// The selected inverse `z` (in L's layout) read at every stored entry of `structure`, in its
/// entry order (original indexing: the ordering's permutation applied). Z is symmetric, so an
/// entry and its mirror read the same value.
///
/// # Errors
/// [`Error::StructureMismatch`] when an entry is not on the factor's pattern (the structure is
/// not the one factored).
pub(crate) fn at_entries(
    symbolic: &SymbolicCholesky<usize>,
    z: &[f64],
    structure: &Structure,
) -> Result<Vec<f64>> {
    let sn = Supernodes::new(symbolic);
    let inverse = symbolic.perm().map(|p| p.arrays().1.to_vec());
    let position = |i: usize| inverse.as_ref().map_or(i, |inv| inv[i]);
    let (cp, ri) = (structure.col_ptr(), structure.row_idx());
    let mut out = Vec::with_capacity(structure.nnz());
    for j in 0..structure.ncols() {
        for &i in &ri[cp[j]..cp[j + 1]] {
            let (pi, pj) = (position(i), position(j));
            let (r, c) = (pi.max(pj), pi.min(pj));
            let k = sn.offset(r, c).ok_or_else(|| Error::StructureMismatch {
                reason: format!("entry ({i}, {j}) is not on the factor's pattern"),
            })?;
            out.push(z[k]);
        }
    }
    Ok(out)
}

/// The diagonal of A⁻¹ (original indexing) from the selected inverse `z`.
pub(crate) fn diagonal(symbolic: &SymbolicCholesky<usize>, z: &[f64]) -> Vec<f64> {
    let sn = Supernodes::new(symbolic);
    let inverse = symbolic.perm().map(|p| p.arrays().1.to_vec());
    (0..symbolic.nrows())
        .map(|i| {
            let p = inverse.as_ref().map_or(i, |inv| inv[i]);
            sn.offset(p, p).map_or(f64::NAN, |k| z[k])
        })
        .collect()
}

/// x = Pᵀ L⁻ᵀ z (LLᵀ) or Pᵀ L⁻ᵀ D^{-1/2} z (LDLᵀ with D > 0), column by column in place: for
/// z ~ N(0, I), x ~ N(0, A⁻¹), since Cov(x) = Pᵀ L⁻ᵀ L⁻¹ P = A⁻¹. A backward substitution over
/// the factor's supernodes; `z`'s rows are read in elimination order (z is white noise, so any
/// fixed order gives the same distribution).
///
/// # Errors
/// [`Error::NotPositiveDefinite`] when an LDLᵀ pivot is ≤ 0 (A⁻¹ is no covariance);
/// [`Error::ShapeMismatch`] unless `z` has n rows.
pub(crate) fn sample(
    symbolic: &SymbolicCholesky<usize>,
    l: &[f64],
    kind: Kind,
    z: &mut nalgebra::DMatrix<f64>,
) -> Result<()> {
    let n = symbolic.nrows();
    if z.nrows() != n {
        return Err(Error::ShapeMismatch {
            op: "sample (z vs A)",
            left: z.shape(),
            right: (n, n),
        });
    }
    let sn = Supernodes::new(symbolic);
    let pivot = |s: usize, j: usize| {
        let ld = sn.width(s) + sn.pattern(s).len();
        l[sn.val_ptr[s] + j * ld + j]
    };
    let mut y = vec![0.0; n];
    let fwd = symbolic.perm().map(|p| p.arrays().0.to_vec());
    for mut column in z.column_iter_mut() {
        y.copy_from_slice(column.as_slice());
        if kind == Kind::Ldlt {
            for s in 0..sn.count() {
                for j in 0..sn.width(s) {
                    let d = pivot(s, j);
                    if d <= 0.0 {
                        return Err(Error::NotPositiveDefinite {
                            column: fwd.as_ref().map_or(sn.begin[s] + j, |f| f[sn.begin[s] + j]),
                            pivot: Some(d),
                        });
                    }
                    y[sn.begin[s] + j] /= d.sqrt();
                }
            }
        }
        for s in (0..sn.count()).rev() {
            let (w, pattern, b) = (sn.width(s), sn.pattern(s), sn.begin[s]);
            let ld = w + pattern.len();
            let block = &l[sn.val_ptr[s]..sn.val_ptr[s] + ld * w];
            for j in (0..w).rev() {
                let col = &block[j * ld..(j + 1) * ld];
                let mut acc = y[b + j];
                for i in j + 1..w {
                    acc -= col[i] * y[b + i];
                }
                for (i, &r) in pattern.iter().enumerate() {
                    acc -= col[w + i] * y[r];
                }
                y[b + j] = match kind {
                    Kind::Llt => acc / col[j],
                    Kind::Ldlt => acc,
                };
            }
        }
        let out = column.as_mut_slice();
        match &fwd {
            Some(f) => {
                for (p, &v) in y.iter().enumerate() {
                    out[f[p]] = v;
                }
            }
            None => out.copy_from_slice(&y),
        }
    }
    Ok(())
}
