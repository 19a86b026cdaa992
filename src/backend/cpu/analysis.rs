//! Symbolic analyses cached on a [`Structure`], computed on first use and shared by every later
//! numeric factorization of the same pattern.

use std::sync::Arc;

use crate::error::Result;
use crate::sparse::{Structure, Symmetry};

/// Returns the structure's analysis of type `T`, computing (and counting) it on first use.
///
/// No lock is held while analysing, so an analysis may itself use other cached analyses.
pub(crate) fn cached<T: std::any::Any + Send + Sync>(
    structure: &Structure,
    analyze: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if let Some(found) = structure.analysis::<T>() {
        return Ok(found);
    }
    let computed = Arc::new(analyze()?);
    structure.record_analysis();
    Ok(structure.insert_analysis(computed))
}

/// Both triangles of a square pattern: for one-triangle storage, the mirrored pattern with the
/// stored entry each full entry reads from; for other storage, the stored pattern itself.
pub(crate) struct FullPattern {
    pub(crate) col_ptr: Vec<usize>,
    pub(crate) row_idx: Vec<usize>,
    /// `source[f]` = index of the stored value that full entry `f` takes.
    pub(crate) source: Option<Vec<usize>>,
}

impl FullPattern {
    /// Values of the full pattern.
    pub(crate) fn values<'a>(&self, stored: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
        match &self.source {
            None => std::borrow::Cow::Borrowed(stored),
            Some(src) => std::borrow::Cow::Owned(src.iter().map(|&k| stored[k]).collect()),
        }
    }
}

/// The full (both-triangle) pattern of a square structure. Not counted as a symbolic analysis:
/// it is a relabelling of the stored pattern.
pub(crate) fn full_pattern(structure: &Structure) -> Result<Arc<FullPattern>> {
    if let Some(found) = structure.analysis::<FullPattern>() {
        return Ok(found);
    }
    let full = if structure.symmetry() == Symmetry::Lower {
        let cols = structure.col_idx();
        let mut pairs = Vec::with_capacity(2 * structure.nnz());
        let mut owner = Vec::with_capacity(2 * structure.nnz());
        for (k, (&i, &j)) in structure.row_idx().iter().zip(&cols).enumerate() {
            pairs.push((i, j));
            owner.push(k);
            if i != j {
                pairs.push((j, i));
                owner.push(k);
            }
        }
        let n = structure.nrows();
        let (general, slot) = Structure::from_pairs(n, n, &pairs, Symmetry::General)?;
        let mut source = vec![0usize; general.nnz()];
        for (p, &f) in slot.iter().enumerate() {
            source[f] = owner[p];
        }
        FullPattern {
            col_ptr: general.col_ptr().to_vec(),
            row_idx: general.row_idx().to_vec(),
            source: Some(source),
        }
    } else {
        FullPattern {
            col_ptr: structure.col_ptr().to_vec(),
            row_idx: structure.row_idx().to_vec(),
            source: None,
        }
    };
    let full = Arc::new(full);
    Ok(structure.insert_analysis(full))
}
