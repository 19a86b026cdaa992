//! Dirichlet (prescribed) unknowns.
//!
//! Splitting the unknowns into free (f) and fixed (c) ones, K u = f with u_c = g becomes
//! K_ff u_f = f_f − K_fc g. [`Dirichlet`] builds K_ff and K_fc as [`Assembly`]s driven by the same
//! parameters as K, so the reduced system keeps K's symmetry (an SPD K gives an SPD K_ff) and the
//! gradient flows through both the matrix and the moved right-hand side. The tape operations on
//! it ([`Dirichlet::rhs`], [`Dirichlet::expand`], [`Dirichlet::solve`]) are in `tape/dirichlet.rs`.

use std::sync::Arc;

use super::{Assembly, Symmetry};
use crate::error::{Error, Result};

/// The elimination of prescribed unknowns from a square [`Assembly`].
#[derive(Debug, Clone)]
pub struct Dirichlet {
    pub(crate) n: usize,
    pub(crate) free: Arc<[usize]>,
    pub(crate) fixed: Arc<[usize]>,
    pub(crate) free_free: Assembly,
    pub(crate) free_fixed: Assembly,
}

impl Dirichlet {
    /// Eliminates the unknowns in `fixed` (any order; repeats are ignored) from `assembly`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a non-square assembly; [`Error::IndexOutOfRange`] for a fixed
    /// index ≥ n.
    pub fn new(assembly: &Assembly, fixed: &[usize]) -> Result<Self> {
        let s = assembly.structure();
        let n = s.nrows();
        if s.ncols() != n {
            return Err(Error::Unsupported {
                reason: format!(
                    "Dirichlet elimination needs a square matrix, got {}×{}",
                    n,
                    s.ncols()
                ),
            });
        }
        let mut is_fixed = vec![false; n];
        for (e, &i) in fixed.iter().enumerate() {
            if i >= n {
                return Err(Error::IndexOutOfRange {
                    context: "Dirichlet fixed unknowns",
                    entry: e,
                    what: "index",
                    index: i,
                    bound: n,
                });
            }
            is_fixed[i] = true;
        }
        // New position of each unknown within its group (monotone, so triangles are preserved).
        let mut position = vec![0usize; n];
        let (mut free, mut fixed_sorted) = (Vec::new(), Vec::new());
        for (i, &f) in is_fixed.iter().enumerate() {
            let group = if f { &mut fixed_sorted } else { &mut free };
            position[i] = group.len();
            group.push(i);
        }
        let symmetry = s.symmetry();
        let mut ff =
            Assembly::builder(free.len(), free.len(), assembly.n_params()).symmetry(symmetry);
        let mut fc = Assembly::builder(free.len(), fixed_sorted.len(), assembly.n_params());
        let cols = s.col_idx();
        for (k, (&i, &j)) in s.row_idx().iter().zip(&cols).enumerate() {
            // A one-triangle off-diagonal value also stands at (j, i).
            let mirrored = symmetry == Symmetry::Lower && i != j;
            for (r, c) in std::iter::once((i, j)).chain(mirrored.then_some((j, i))) {
                let target = match (is_fixed[r], is_fixed[c]) {
                    (false, false) if (r, c) == (i, j) => &mut ff,
                    (false, true) => &mut fc,
                    _ => continue,
                };
                let (pr, pc) = (position[r], position[c]);
                target.push_constant(pr, pc, assembly.constants()[k]);
                for (q, a) in assembly.terms(k)? {
                    target.push_entry(pr, pc, q, a);
                }
            }
        }
        Ok(Dirichlet {
            n,
            free: free.into(),
            fixed: fixed_sorted.into(),
            free_free: ff.build()?,
            free_fixed: fc.build()?,
        })
    }

    /// The number of unknowns, free and prescribed (the assembly's dimension).
    pub fn n(&self) -> usize {
        self.free().len() + self.fixed().len()
    }

    /// The free unknowns, ascending.
    pub fn free(&self) -> &[usize] {
        &self.free
    }
    /// The fixed unknowns, ascending (the row order of `g` in [`Dirichlet::rhs`]).
    pub fn fixed(&self) -> &[usize] {
        &self.fixed
    }
    /// K_ff: the reduced matrix, with the original symmetry.
    pub fn free_assembly(&self) -> &Assembly {
        &self.free_free
    }
    /// K_fc: the coupling of free rows to fixed columns (general storage).
    pub fn coupling_assembly(&self) -> &Assembly {
        &self.free_fixed
    }
}
