//! `Assembly`: the linear map from a parameter vector p to the stored values of a sparse matrix,
//! values = M p + c. Its adjoint is p̄ = Mᵀ v̄, so nonlinear dependence on design variables is
//! expressed with tape ops *before* the assembly and everything after it stays sparse and linear.

use std::sync::Arc;

use nalgebra::DVector;
use nalgebra_sparse::{CooMatrix, CscMatrix};
use rayon::prelude::*;

use super::{Structure, Symmetry};
use crate::error::{check_finite, Error, Result};

/// The linear map values = M p + c onto the stored entries of a [`Structure`].
///
/// M is stored row-per-entry (for entry k: a list of (parameter, coefficient) terms), so the
/// forward map is a gather and the adjoint a scatter, both O(number of terms).
///
/// ```
/// use sparsegrad::{Assembly, Symmetry};
/// // A = [[1 + p0, -p0], [-p0, 1 + p0]] stored as the lower triangle.
/// let asm = Assembly::builder(2, 2, 1)
///     .symmetry(Symmetry::Lower)
///     .constant(0, 0, 1.0)
///     .constant(1, 1, 1.0)
///     .entry(0, 0, 0, 1.0)
///     .entry(1, 1, 0, 1.0)
///     .entry(1, 0, 0, -1.0)
///     .build()
///     .unwrap();
/// assert_eq!(asm.structure().nnz(), 3);
/// assert_eq!(asm.values(&[2.0]).unwrap(), vec![3.0, -2.0, 3.0]);
/// ```
///
/// Cloning is cheap (the map is shared by `Arc`), so tape nodes keep their own handle.
#[derive(Debug, Clone)]
pub struct Assembly {
    structure: Arc<Structure>,
    n_params: usize,
    map: Arc<LinearMap>,
}

/// M (row-per-entry CSR) and c.
#[derive(Debug)]
struct LinearMap {
    term_ptr: Vec<usize>,
    term_param: Vec<usize>,
    term_coeff: Vec<f64>,
    constants: Vec<f64>,
}

impl LinearMap {
    /// Every stored entry's terms, in storage order: (parameters, coefficients).
    fn entries(&self) -> impl Iterator<Item = (&[usize], &[f64])> + '_ {
        self.term_ptr
            .windows(2)
            .map(|w| (&self.term_param[w[0]..w[1]], &self.term_coeff[w[0]..w[1]]))
    }
}

/// Collects (row, column, parameter, coefficient) terms and constants for an [`Assembly`].
#[derive(Debug, Clone)]
pub struct AssemblyBuilder {
    nrows: usize,
    ncols: usize,
    n_params: usize,
    symmetry: Symmetry,
    terms: Vec<(usize, usize, usize, f64)>,
    constants: Vec<(usize, usize, f64)>,
    /// The first invalid element matrix, reported by `build`.
    pending: Option<Error>,
}

impl AssemblyBuilder {
    /// Sets how symmetry is stored (default [`Symmetry::General`]).
    pub fn symmetry(mut self, symmetry: Symmetry) -> Self {
        self.symmetry = symmetry;
        self
    }
    /// Adds `coeff · p[param]` to entry (row, col). Repeated (row, col) pairs are summed.
    pub fn entry(mut self, row: usize, col: usize, param: usize, coeff: f64) -> Self {
        self.push_entry(row, col, param, coeff);
        self
    }
    /// Adds a constant to entry (row, col) (a zero constant still makes the entry structural).
    pub fn constant(mut self, row: usize, col: usize, value: f64) -> Self {
        self.push_constant(row, col, value);
        self
    }
    /// Reserves room for at least `terms` more terms (element loops know their count: the
    /// term list then grows without copies).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when they cannot be allocated (the builder is unchanged).
    pub fn reserve(&mut self, terms: usize) -> Result<()> {
        self.terms
            .try_reserve(terms)
            .map_err(|_| Error::OutOfMemory {
                what: format!("{terms} assembly terms"),
                reason: "the allocator refused".into(),
            })
    }
    /// In-place form of [`AssemblyBuilder::entry`], for loops.
    pub fn push_entry(&mut self, row: usize, col: usize, param: usize, coeff: f64) {
        self.terms.push((row, col, param, coeff));
    }
    /// In-place form of [`AssemblyBuilder::constant`], for loops.
    pub fn push_constant(&mut self, row: usize, col: usize, value: f64) {
        self.constants.push((row, col, value));
    }
    /// Adds `p[param] · ke` on the unknowns `dofs` — a dense element matrix such as a bar's or a
    /// triangle's stiffness: entry (`dofs[a]`, `dofs[b]`) += `ke[(a, b)]` · `p[param]`. The builder keeps
    /// the stored part itself: with [`Symmetry::Lower`] only the entries on or below the diagonal
    /// (ke must then be symmetric), otherwise all of them.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::{Assembly, Symmetry};
    /// // Two springs in series, 0 – 1 – 2, stiffness p0 and p1.
    /// let ke = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 1.0]);
    /// let asm = Assembly::builder(3, 3, 2)
    ///     .symmetry(Symmetry::Lower)
    ///     .element(&[0, 1], 0, &ke)
    ///     .element(&[1, 2], 1, &ke)
    ///     .build()
    ///     .unwrap();
    /// let a = asm.to_csc_full(&[2.0, 3.0]).unwrap();
    /// assert_eq!(nalgebra::DMatrix::from(&a), DMatrix::from_row_slice(3, 3, &[
    ///     2.0, -2.0, 0.0,
    ///     -2.0, 5.0, -3.0,
    ///     0.0, -3.0, 3.0,
    /// ]));
    /// ```
    ///
    /// A `ke` that is not `dofs.len()` square, or not symmetric (to 1e-12 relative) for
    /// symmetric storage, makes [`AssemblyBuilder::build`] fail with [`Error::ShapeMismatch`] or
    /// [`Error::NotSymmetric`].
    pub fn push_element(&mut self, dofs: &[usize], param: usize, ke: &nalgebra::DMatrix<f64>) {
        let m = dofs.len();
        if ke.shape() != (m, m) {
            self.pending.get_or_insert(Error::ShapeMismatch {
                op: "AssemblyBuilder::push_element (element matrix vs dofs)",
                left: ke.shape(),
                right: (m, m),
            });
            return;
        }
        let symmetric = self.symmetry != Symmetry::General;
        if symmetric {
            let scale = ke.amax();
            for a in 0..m {
                for b in 0..a {
                    if (ke[(a, b)] - ke[(b, a)]).abs() > 1e-12 * scale {
                        self.pending.get_or_insert(Error::NotSymmetric {
                            row: a,
                            col: b,
                            value: ke[(a, b)],
                            mirror: ke[(b, a)],
                        });
                        return;
                    }
                }
            }
        }
        let lower = self.symmetry == Symmetry::Lower;
        for (a, &r) in dofs.iter().enumerate() {
            for (b, &c) in dofs.iter().enumerate() {
                // (r, c) above the diagonal is represented by its mirror (c, r) in one-triangle
                // storage; equal dofs both land on the diagonal.
                if !(lower && r < c) {
                    self.terms.push((r, c, param, ke[(a, b)]));
                }
            }
        }
    }
    /// Builder form of [`AssemblyBuilder::push_element`].
    pub fn element(mut self, dofs: &[usize], param: usize, ke: &nalgebra::DMatrix<f64>) -> Self {
        self.push_element(dofs, param, ke);
        self
    }

    /// Validates the terms and builds the assembly and its [`Structure`].
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for a row, column or parameter out of range (naming the term);
    /// [`Error::NonFinite`] for a non-finite coefficient or constant; [`Error::InvalidPattern`] for
    /// an entry above the diagonal with [`Symmetry::Lower`] or a non-symmetric pattern with
    /// [`Symmetry::Full`].
    pub fn build(self) -> Result<Assembly> {
        if let Some(e) = self.pending {
            return Err(e);
        }
        let (n_params, nrows, ncols) = (self.n_params, self.nrows, self.ncols);
        // One pass over the terms: the first bad parameter or coefficient (reported first, as
        // before any pattern check) and the first row or column out of range.
        let (bad_term, bad_pair) = self
            .terms
            .par_iter()
            .enumerate()
            .map(|(t, &(row, col, param, coeff))| {
                let bad = |b: bool| if b { t } else { usize::MAX };
                (
                    bad(param >= n_params || !coeff.is_finite()),
                    bad(row >= nrows || col >= ncols),
                )
            })
            .reduce(
                || (usize::MAX, usize::MAX),
                |a, b| (a.0.min(b.0), a.1.min(b.1)),
            );
        if bad_term != usize::MAX {
            let (row, col, param, coeff) = self.terms[bad_term];
            return Err(if param >= n_params {
                Error::IndexOutOfRange {
                    context: "Assembly entry",
                    entry: bad_term,
                    what: "parameter",
                    index: param,
                    bound: n_params,
                }
            } else {
                Error::NonFinite {
                    context: "Assembly coefficient",
                    row,
                    col,
                    value: coeff,
                }
            });
        }
        for &(row, col, value) in &self.constants {
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    context: "Assembly constant",
                    row,
                    col,
                    value,
                });
            }
        }
        let n_terms = self.terms.len();
        let pair = |e: usize| {
            if e < n_terms {
                (self.terms[e].0, self.terms[e].1)
            } else {
                (self.constants[e - n_terms].0, self.constants[e - n_terms].1)
            }
        };
        // The terms' positions are checked above when all are in range; `from_pair_fn` checks
        // the rest (the constants', or every item to name the first term out of range).
        let checked = if bad_pair == usize::MAX { n_terms } else { 0 };
        let grouped = Structure::from_pair_fn(
            self.nrows,
            self.ncols,
            n_terms + self.constants.len(),
            pair,
            self.symmetry,
            checked,
        )?;
        let structure = grouped.structure.clone();
        let nnz = structure.nnz();
        // Per stored entry: its constant, and its terms merged by parameter (CSR over entries).
        // Ranges of entries (about 64 Ki terms each) are merged in parallel and joined in order.
        let ranges = super::balanced_ranges(nnz, 1 << 16, |k| grouped.items(k).len());
        let mut constants = vec![0.0; nnz];
        let mut constant_parts = Vec::with_capacity(ranges.len());
        let mut rest = &mut constants[..];
        for range in &ranges {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(range.len());
            constant_parts.push(part);
            rest = tail;
        }
        let pieces: Vec<(Vec<usize>, Vec<f64>, Vec<usize>)> = ranges
            .par_iter()
            .zip(constant_parts)
            .map(|(range, constant_part)| {
                let (mut params, mut coeffs, mut counts) = (Vec::new(), Vec::new(), Vec::new());
                let mut run: Vec<(usize, f64)> = Vec::new();
                for (k, constant) in range.clone().zip(constant_part.iter_mut()) {
                    run.clear();
                    for &e in grouped.items(k) {
                        if e < n_terms {
                            run.push((self.terms[e].2, self.terms[e].3));
                        } else {
                            *constant += self.constants[e - n_terms].2;
                        }
                    }
                    // Items arrive in input order within an entry; sum in that order per
                    // parameter.
                    run.sort_by_key(|&(param, _)| param);
                    let before = params.len();
                    let mut last = None;
                    for &(param, coeff) in &run {
                        if last == Some(param) {
                            *coeffs.last_mut().expect("a previous term exists") += coeff;
                        } else {
                            params.push(param);
                            coeffs.push(coeff);
                            last = Some(param);
                        }
                    }
                    counts.push(params.len() - before);
                }
                (params, coeffs, counts)
            })
            .collect();
        let (term_ptr, term_param, term_coeff) = super::join_pieces(&pieces);
        let map = Arc::new(LinearMap {
            term_ptr,
            term_param,
            term_coeff,
            constants,
        });
        Ok(Assembly {
            structure,
            n_params: self.n_params,
            map,
        })
    }
}

impl Assembly {
    /// Starts an assembly of an `nrows × ncols` matrix driven by `n_params` parameters.
    pub fn builder(nrows: usize, ncols: usize, n_params: usize) -> AssemblyBuilder {
        AssemblyBuilder {
            nrows,
            ncols,
            n_params,
            symmetry: Symmetry::General,
            terms: Vec::new(),
            constants: Vec::new(),
            pending: None,
        }
    }

    /// An assembly whose parameters are the stored values of `matrix` themselves, in CSC order
    /// (M = I, c = 0). Returns it with those values as the initial parameter vector, so the gradient
    /// with respect to the parameters is the gradient of each stored value, in CSC order.
    ///
    /// # Errors
    /// As [`Structure::new`] for the declared `symmetry`; [`Error::NonFinite`] for a non-finite value.
    pub fn from_csc(
        matrix: &CscMatrix<f64>,
        symmetry: Symmetry,
    ) -> Result<(Assembly, DVector<f64>)> {
        let (nrows, ncols) = (matrix.nrows(), matrix.ncols());
        let structure = Structure::new(
            nrows,
            ncols,
            matrix.col_offsets().to_vec(),
            matrix.row_indices().to_vec(),
            symmetry,
        )?;
        structure.check_values(matrix.values())?;
        let nnz = structure.nnz();
        let map = LinearMap {
            term_ptr: (0..=nnz).collect(),
            term_param: (0..nnz).collect(),
            term_coeff: vec![1.0; nnz],
            constants: vec![0.0; nnz],
        };
        let asm = Assembly {
            structure,
            n_params: nnz,
            map: Arc::new(map),
        };
        Ok((asm, DVector::from_column_slice(matrix.values())))
    }

    /// An assembly with one parameter per triplet of `matrix`, in triplet order; duplicate triplets
    /// are summed into one stored entry, so each duplicate receives the gradient of that entry.
    /// Returns it with the triplet values as the initial parameter vector.
    ///
    /// # Errors
    /// As [`AssemblyBuilder::build`].
    pub fn from_coo(
        matrix: &CooMatrix<f64>,
        symmetry: Symmetry,
    ) -> Result<(Assembly, DVector<f64>)> {
        let mut b =
            Assembly::builder(matrix.nrows(), matrix.ncols(), matrix.nnz()).symmetry(symmetry);
        let mut p = Vec::with_capacity(matrix.nnz());
        for (t, (i, j, &v)) in matrix.triplet_iter().enumerate() {
            b.push_entry(i, j, t, 1.0);
            p.push(v);
        }
        check_finite("COO matrix values", &p, p.len())?;
        Ok((b.build()?, DVector::from_vec(p)))
    }

    /// An assembly from an already grouped map: for stored entry k, its terms are
    /// `term_param/term_coeff[term_ptr[k]..term_ptr[k + 1]]` (distinct parameters, increasing) and
    /// its constant `constants[k]`. For crate constructors that build the map directly.
    pub(crate) fn from_map(
        structure: Arc<Structure>,
        n_params: usize,
        term_ptr: Vec<usize>,
        term_param: Vec<usize>,
        term_coeff: Vec<f64>,
        constants: Vec<f64>,
    ) -> Assembly {
        debug_assert_eq!(term_ptr.len(), structure.nnz() + 1);
        debug_assert_eq!(constants.len(), structure.nnz());
        debug_assert_eq!(term_param.len(), term_coeff.len());
        debug_assert!(term_param.iter().all(|&q| q < n_params));
        Assembly {
            structure,
            n_params,
            map: Arc::new(LinearMap {
                term_ptr,
                term_param,
                term_coeff,
                constants,
            }),
        }
    }

    /// The pattern of the assembled matrix.
    pub fn structure(&self) -> &Arc<Structure> {
        &self.structure
    }
    /// Length of the parameter vector p.
    pub fn n_params(&self) -> usize {
        self.n_params
    }
    /// The constant part c (one value per stored entry).
    pub fn constants(&self) -> &[f64] {
        &self.map.constants
    }
    /// The (parameter, coefficient) terms of stored entry `k`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for `k ≥ nnz`.
    pub fn terms(&self, k: usize) -> Result<impl Iterator<Item = (usize, f64)> + '_> {
        let m = &*self.map;
        if k >= m.constants.len() {
            return Err(Error::IndexOutOfRange {
                context: "Assembly::terms",
                entry: 0,
                what: "stored entry",
                index: k,
                bound: m.constants.len(),
            });
        }
        let r = m.term_ptr[k]..m.term_ptr[k + 1];
        Ok(m.term_param[r.clone()]
            .iter()
            .copied()
            .zip(m.term_coeff[r].iter().copied()))
    }

    /// Stored values M p + c.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `p.len() != n_params`; [`Error::NonFinite`] if a value is not finite.
    pub fn values(&self, p: &[f64]) -> Result<Vec<f64>> {
        if p.len() != self.n_params {
            return Err(Error::ShapeMismatch {
                op: "assemble",
                left: (p.len(), 1),
                right: (self.n_params, 1),
            });
        }
        let m = &*self.map;
        let mut values = crate::pool::with_capacity(m.constants.len());
        let mut finite = true;
        for (&c, (params, coeffs)) in m.constants.iter().zip(m.entries()) {
            let mut sum = -0.0;
            for (&q, &a) in params.iter().zip(coeffs) {
                sum += a * p[q];
            }
            let v = c + sum;
            finite &= v.is_finite();
            values.push(v);
        }
        if !finite {
            // Names the first non-finite entry.
            self.structure.check_values(&values)?;
        }
        Ok(values)
    }

    /// The derivative of the stored values along `dp`: M·dp (no constant term) — the tangent of
    /// [`Assembly::values`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `dp.len() != n_params`.
    pub fn linear_values(&self, dp: &[f64]) -> Result<Vec<f64>> {
        if dp.len() != self.n_params {
            return Err(Error::ShapeMismatch {
                op: "assemble (tangent)",
                left: (dp.len(), 1),
                right: (self.n_params, 1),
            });
        }
        let m = &*self.map;
        Ok(m.entries()
            .map(|(params, coeffs)| params.iter().zip(coeffs).map(|(&q, &a)| a * dp[q]).sum())
            .collect())
    }

    /// The adjoint p̄ += Mᵀ v̄ (accumulated into `p_bar`, of length `n_params`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `v_bar` has one entry per stored entry and `p_bar` one per
    /// parameter.
    pub fn adjoint_into(&self, v_bar: &[f64], p_bar: &mut [f64]) -> Result<()> {
        let nnz = self.map.constants.len();
        if v_bar.len() != nnz || p_bar.len() != self.n_params {
            return Err(Error::ShapeMismatch {
                op: "Assembly::adjoint_into (v̄, p̄) vs (nnz, n_params)",
                left: (v_bar.len(), p_bar.len()),
                right: (nnz, self.n_params),
            });
        }
        for (&vb, (params, coeffs)) in v_bar.iter().zip(self.map.entries()) {
            for (&q, &a) in params.iter().zip(coeffs) {
                p_bar[q] += a * vb;
            }
        }
        Ok(())
    }

    /// The assembled matrix as a nalgebra-sparse `CscMatrix` (the stored triangle only for
    /// [`Symmetry::Lower`]).
    ///
    /// # Errors
    /// As [`Assembly::values`].
    pub fn to_csc(&self, p: &[f64]) -> Result<CscMatrix<f64>> {
        self.structure.to_csc(&self.values(p)?)
    }

    /// The assembled matrix with both triangles (for [`Symmetry::Lower`] the stored triangle is
    /// mirrored; otherwise as [`Assembly::to_csc`]) — for cross-checks against dense code.
    ///
    /// # Errors
    /// As [`Assembly::values`].
    pub fn to_csc_full(&self, p: &[f64]) -> Result<CscMatrix<f64>> {
        self.structure.to_csc_full(&self.values(p)?)
    }
}
