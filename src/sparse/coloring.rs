//! Column coloring of a sparsity pattern (Curtis–Powell–Reid): columns that share no row get one
//! color, so one Jacobian-vector product with the sum of a color's unit vectors reads every
//! column of that color at once — a sparse Jacobian from as many products as colors.

use super::{Structure, Symmetry};
use crate::error::{Error, Result};

/// A partition of a pattern's columns into structurally orthogonal groups (no two columns of a
/// group have an entry in the same row). From [`ColumnColoring::greedy`].
///
/// ```
/// use sparsegrad::sparse::ColumnColoring;
/// use sparsegrad::{Structure, Symmetry};
/// // A tridiagonal 6×6 pattern: column j touches rows j−1, j, j+1, so 3 colors suffice.
/// let pairs: Vec<(usize, usize)> = (0..6usize)
///     .flat_map(|j| [j.saturating_sub(1), j, (j + 1).min(5)].map(|i| (i, j)))
///     .collect();
/// let (s, _) = Structure::from_pairs(6, 6, &pairs, Symmetry::General).unwrap();
/// let coloring = ColumnColoring::greedy(&s).unwrap();
/// assert_eq!(coloring.count(), 3);
/// assert_eq!(coloring.colors(), &[0, 1, 2, 0, 1, 2]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnColoring {
    colors: Vec<usize>,
    count: usize,
}

impl ColumnColoring {
    /// The greedy distance-2 coloring in column order: each column takes the smallest color not
    /// used by a column that shares one of its rows. At most (the largest number of columns
    /// meeting any column through a row) + 1 colors — the stencil size, not n.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a [`Symmetry::Lower`] pattern (a coloring reads every stored
    /// entry of a column from one product: give the full pattern, [`Symmetry::Full`]).
    pub fn greedy(structure: &Structure) -> Result<Self> {
        if structure.symmetry() == Symmetry::Lower {
            return Err(Error::Unsupported {
                reason: "a column coloring needs the full pattern (Symmetry::Full or General), \
                         not one triangle"
                    .into(),
            });
        }
        let (m, n) = (structure.nrows(), structure.ncols());
        let (cp, ri) = (structure.col_ptr(), structure.row_idx());
        // The columns of each row (the pattern's transpose).
        let mut row_ptr = vec![0usize; m + 1];
        for &i in ri {
            row_ptr[i + 1] += 1;
        }
        for i in 0..m {
            row_ptr[i + 1] += row_ptr[i];
        }
        let mut next = row_ptr.clone();
        let mut row_cols = vec![0usize; ri.len()];
        for j in 0..n {
            for &i in &ri[cp[j]..cp[j + 1]] {
                row_cols[next[i]] = j;
                next[i] += 1;
            }
        }
        const NONE: usize = usize::MAX;
        let mut colors = vec![NONE; n];
        // forbidden[c] == j: color c is taken by a neighbour of column j.
        let mut forbidden: Vec<usize> = Vec::new();
        let mut count = 0;
        for j in 0..n {
            for &i in &ri[cp[j]..cp[j + 1]] {
                for &c in &row_cols[row_ptr[i]..row_ptr[i + 1]] {
                    if colors[c] != NONE {
                        forbidden[colors[c]] = j;
                    }
                }
            }
            let color = (0..count).find(|&c| forbidden[c] != j).unwrap_or(count);
            if color == count {
                count += 1;
                forbidden.push(NONE);
            }
            colors[j] = color;
        }
        Ok(ColumnColoring { colors, count })
    }

    /// The color of each column.
    pub fn colors(&self) -> &[usize] {
        &self.colors
    }

    /// How many colors (Jacobian-vector products) the coloring needs.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The columns of each color, in ascending order.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.count];
        for (j, &c) in self.colors.iter().enumerate() {
            groups[c].push(j);
        }
        groups
    }
}
