//! A square matrix in full CSR form (both triangles), shared by the CPU Krylov solvers and
//! preconditioners and the GPU iterative solver.

use crate::error::{Error, Result};
use crate::sparse::{counting_groups, Structure, Symmetry, NO_GROUP};

/// A square matrix in full CSR (both triangles for symmetric storage), column indices sorted.
pub(crate) struct Csr {
    pub(crate) n: usize,
    pub(crate) ptr: Vec<usize>,
    pub(crate) idx: Vec<usize>,
    pub(crate) val: Vec<f64>,
}

impl Csr {
    /// The full matrix stored by `structure` with `values` (one-triangle storage is mirrored).
    ///
    /// One counting sort of the stored entries by row ([`counting_groups`]; a mirrored entry
    /// also joins its column's row). Items arrive in storage order, i.e. by column, so each row's
    /// column indices come out increasing: (r, j < r) from earlier columns, then column r's own
    /// entries (r, r), (r, i > r) in row order.
    pub(crate) fn new(structure: &Structure, values: &[f64]) -> Self {
        let n = structure.nrows();
        let mirror = structure.symmetry() == Symmetry::Lower;
        let (rows, cols) = (structure.row_idx(), structure.col_idx());
        let (ptr, items) = counting_groups(n, rows.len(), |e| {
            let (i, j) = (rows[e], cols[e]);
            [i, if mirror && i != j { j } else { NO_GROUP }]
        });
        let mut idx = Vec::with_capacity(items.len());
        let mut val = Vec::with_capacity(items.len());
        for r in 0..n {
            for &e in &items[ptr[r]..ptr[r + 1]] {
                idx.push(if rows[e] == r { cols[e] } else { rows[e] });
                val.push(values[e]);
            }
        }
        Csr { n, ptr, idx, val }
    }

    /// y = A x (or Aᵀ x).
    pub(crate) fn mul(&self, x: &[f64], y: &mut [f64], transpose: bool) {
        if transpose {
            y.iter_mut().for_each(|v| *v = 0.0);
            for (r, &xr) in x.iter().enumerate().take(self.n) {
                for e in self.ptr[r]..self.ptr[r + 1] {
                    y[self.idx[e]] += self.val[e] * xr;
                }
            }
        } else {
            for (r, yr) in y.iter_mut().enumerate() {
                let range = self.ptr[r]..self.ptr[r + 1];
                *yr = self.idx[range.clone()]
                    .iter()
                    .zip(&self.val[range])
                    .map(|(&j, &v)| v * x[j])
                    .sum();
            }
        }
    }

    /// Position of the diagonal entry of each row.
    pub(crate) fn diagonal_positions(&self, what: &'static str) -> Result<Vec<usize>> {
        (0..self.n)
            .map(|r| {
                let range = self.ptr[r]..self.ptr[r + 1];
                self.idx[range.clone()]
                    .binary_search(&r)
                    .map(|p| range.start + p)
                    .map_err(|_| Error::Preconditioner {
                        preconditioner: what,
                        row: r,
                        reason: format!("diagonal entry ({r}, {r}) is not stored"),
                    })
            })
            .collect()
    }
}
