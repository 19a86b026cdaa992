//! Host-side plans for the GPU backend, built and tested on the CPU: the Cholesky factor as plain
//! CSC arrays in 32-bit indices, level schedules for parallel triangular solves, and a CPU
//! execution of every plan that the tests compare with faer's own solves (the GPU kernels run exactly these loops, one thread per (row, column)).

// Without the `cuda` feature only the tests use these plans.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use faer::sparse::linalg::cholesky::{SymbolicCholesky, SymbolicCholeskyRaw};

use crate::error::{Error, Result};
use crate::sparse::Structure;

/// Converts an index or count to the 32-bit integers the GPU kernels use.
pub(crate) fn index32(value: usize, what: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::IndexOverflow {
        backend: "the GPU backend (32-bit indices)",
        what: what.to_string(),
        value: value as u64,
        limit: i32::MAX as u64,
        hint: "",
    })
}

pub(crate) fn indices32(values: impl IntoIterator<Item = usize>, what: &str) -> Result<Vec<i32>> {
    values.into_iter().map(|v| index32(v, what)).collect()
}

/// Rows of a triangular matrix in compressed form (each row holds its diagonal entry).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TriangularRows {
    pub(crate) ptr: Vec<i32>,
    pub(crate) idx: Vec<i32>,
    pub(crate) val: Vec<f64>,
}

/// The numeric Cholesky factor L of P A Pᵀ (lower triangular, CSC) with its permutation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LowerFactor {
    pub(crate) n: usize,
    /// Columns of L, i.e. rows of Lᵀ: the arrays of the backward (Lᵀ) solve.
    pub(crate) columns: TriangularRows,
    /// `perm[new] = old`: row `new` of P A Pᵀ is row `old` of A.
    pub(crate) perm: Vec<i32>,
}

impl LowerFactor {
    /// Extracts L from faer's simplicial or supernodal LLᵀ values.
    pub(crate) fn from_faer(symbolic: &SymbolicCholesky<usize>, values: &[f64]) -> Result<Self> {
        let n = symbolic.nrows();
        index32(n, "n")?;
        let mut ptr = Vec::with_capacity(n + 1);
        let mut idx = Vec::new();
        let mut val = Vec::new();
        ptr.push(0i32);
        match symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(s) => {
                let (cp, ri) = (s.col_ptr(), s.row_idx());
                index32(cp[n], "nnz(L)")?;
                idx = indices32(ri.iter().copied(), "row index")?;
                val.extend_from_slice(&values[..cp[n]]);
                ptr = indices32(cp.iter().copied(), "nnz(L)")?;
            }
            SymbolicCholeskyRaw::Supernodal(s) => {
                let (begin, end) = (s.supernode_begin(), s.supernode_end());
                let (rp, vp, ri) = (s.col_ptr_for_row_idx(), s.col_ptr_for_val(), s.row_idx());
                let pattern_len = s.nnz_per_super();
                for sn in 0..s.n_supernodes() {
                    let start = begin[sn];
                    let width = end[sn] - start;
                    let pattern = &ri[rp[sn]..][..pattern_len[sn]];
                    let height = width + pattern.len();
                    let block = &values[vp[sn]..vp[sn + 1]];
                    for c in 0..width {
                        let column = &block[c * height..(c + 1) * height];
                        for (r, &v) in column.iter().enumerate().take(width).skip(c) {
                            idx.push(index32(start + r, "row index")?);
                            val.push(v);
                        }
                        for (&row, &v) in pattern.iter().zip(&column[width..]) {
                            idx.push(index32(row, "row index")?);
                            val.push(v);
                        }
                        ptr.push(index32(idx.len(), "nnz(L)")?);
                    }
                }
            }
        }
        let perm = match symbolic.perm() {
            Some(p) => indices32(p.arrays().0.iter().copied(), "n")?,
            None => (0..n as i32).collect(),
        };
        Ok(LowerFactor {
            n,
            columns: TriangularRows { ptr, idx, val },
            perm,
        })
    }

    /// Rows of L (CSR): the arrays of the forward (L) solve, diagonal last in each row. A counting
    /// transpose on the 32-bit arrays in place, not `sparse::transpose_pattern`: L can hold 10⁸
    /// entries here, where its `usize` copies and source map would triple the host memory.
    pub(crate) fn rows(&self) -> TriangularRows {
        let c = &self.columns;
        let n = self.n;
        let mut count = vec![0i32; n + 1];
        for &i in &c.idx {
            count[i as usize + 1] += 1;
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let ptr = count.clone();
        let mut next = count;
        let mut idx = vec![0i32; c.idx.len()];
        let mut val = vec![0.0; c.val.len()];
        for j in 0..n {
            for e in c.ptr[j] as usize..c.ptr[j + 1] as usize {
                let i = c.idx[e] as usize;
                let slot = next[i] as usize;
                idx[slot] = j as i32;
                val[slot] = c.val[e];
                next[i] += 1;
            }
        }
        TriangularRows { ptr, idx, val }
    }

    /// Level schedule of the forward solve L y = b: a row's level is one more than the highest
    /// level of the rows it reads.
    pub(crate) fn forward_schedule(&self) -> Schedule {
        let c = &self.columns;
        let mut level = vec![0usize; self.n];
        for j in 0..self.n {
            for e in c.ptr[j] as usize..c.ptr[j + 1] as usize {
                let i = c.idx[e] as usize;
                if i != j {
                    level[i] = level[i].max(level[j] + 1);
                }
            }
        }
        Schedule::from_levels(&level)
    }

    /// Level schedule of the backward solve Lᵀ x = y (row j of Lᵀ reads the rows i > j of
    /// column j of L).
    pub(crate) fn backward_schedule(&self) -> Schedule {
        let c = &self.columns;
        let mut level = vec![0usize; self.n];
        for j in (0..self.n).rev() {
            for e in c.ptr[j] as usize..c.ptr[j + 1] as usize {
                let i = c.idx[e] as usize;
                if i != j {
                    level[j] = level[j].max(level[i] + 1);
                }
            }
        }
        Schedule::from_levels(&level)
    }

    #[cfg(test)]
    /// Solves A X = B (column-major n×k, in place) exactly as the GPU does: permute, forward
    /// levels, backward levels, permute back.
    pub(crate) fn solve_cpu(&self, b: &mut [f64], k: usize) {
        let n = self.n;
        let mut y = vec![0.0; n * k];
        for c in 0..k {
            for i in 0..n {
                y[i + c * n] = b[self.perm[i] as usize + c * n];
            }
        }
        self.forward_schedule().run_cpu(&self.rows(), &mut y, n, k);
        self.backward_schedule()
            .run_cpu(&self.columns, &mut y, n, k);
        for c in 0..k {
            for i in 0..n {
                b[self.perm[i] as usize + c * n] = y[i + c * n];
            }
        }
    }
}

/// Rows grouped by level: rows of one level only read rows of earlier levels, so one kernel
/// launch per level solves them all in parallel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    /// Row indices, level by level.
    pub(crate) order: Vec<i32>,
    /// `order[level_ptr[l]..level_ptr[l + 1]]` are the rows of level `l`.
    pub(crate) level_ptr: Vec<usize>,
}

impl Schedule {
    fn from_levels(level: &[usize]) -> Self {
        let levels = level.iter().max().map_or(0, |m| m + 1);
        let (level_ptr, rows) = crate::sparse::counting_groups(levels, level.len(), |row| {
            [level[row], crate::sparse::NO_GROUP]
        });
        // Rows fit in i32: the factor's indices were converted by `index32` before.
        let order = rows.into_iter().map(|row| row as i32).collect();
        Schedule { order, level_ptr }
    }

    /// Number of levels (kernel launches per solve).
    pub(crate) fn levels(&self) -> usize {
        self.level_ptr.len() - 1
    }

    #[cfg(test)]
    /// The GPU kernel's loop on the CPU: for each level, each (row, column):
    /// x_r ← (x_r − Σ_{j≠r} t_rj x_j) / t_rr.
    pub(crate) fn run_cpu(&self, t: &TriangularRows, x: &mut [f64], n: usize, k: usize) {
        for l in 0..self.levels() {
            for c in 0..k {
                let xc = &mut x[c * n..(c + 1) * n];
                for &r in &self.order[self.level_ptr[l]..self.level_ptr[l + 1]] {
                    let r = r as usize;
                    let (mut s, mut d) = (xc[r], 1.0);
                    for e in t.ptr[r] as usize..t.ptr[r + 1] as usize {
                        let j = t.idx[e] as usize;
                        if j == r {
                            d = t.val[e];
                        } else {
                            s -= t.val[e] * xc[j];
                        }
                    }
                    xc[r] = s / d;
                }
            }
        }
    }
}

/// Row and column of every stored entry, for the gradient-scatter kernel.
pub(crate) fn entry_coordinates(structure: &Structure) -> Result<(Vec<i32>, Vec<i32>)> {
    let rows = indices32(structure.row_idx().iter().copied(), "row index")?;
    let cols = indices32(structure.col_idx(), "column index")?;
    Ok((rows, cols))
}

#[cfg(test)]
/// The gradient-scatter kernel's loop: Ā_e = −Σ_c (Λ_ic X_jc + [one triangle, i ≠ j] Λ_jc X_ic).
pub(crate) fn scatter_cpu(
    rows: &[i32],
    cols: &[i32],
    lower: bool,
    lambda: &[f64],
    x: &[f64],
    n: usize,
    k: usize,
) -> Vec<f64> {
    rows.iter()
        .zip(cols)
        .map(|(&i, &j)| {
            let (i, j) = (i as usize, j as usize);
            let mut s = 0.0;
            for c in 0..k {
                s += lambda[i + c * n] * x[j + c * n];
                if lower && i != j {
                    s += lambda[j + c * n] * x[i + c * n];
                }
            }
            -s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::cholesky::{FaerCholesky, Kind};
    use crate::solve::node::accumulate_outer;
    use crate::sparse::{Assembly, Symmetry};
    use nalgebra::DMatrix;
    use rand::{Rng, SeedableRng};

    /// A = I + L(θ) on a k×k grid, random θ, in the given storage.
    fn grid(k: usize, symmetry: Symmetry, seed: u64) -> (std::sync::Arc<Structure>, Vec<f64>) {
        // The 4-neighbour grid's edges (right and down neighbours).
        let edges: Vec<(usize, usize)> = (0..k * k)
            .flat_map(|v| {
                let right = (v % k + 1 < k).then_some((v + 1, v));
                let down = (v + k < k * k).then_some((v + k, v));
                right.into_iter().chain(down)
            })
            .collect();
        let mut b = Assembly::builder(k * k, k * k, edges.len()).symmetry(symmetry);
        for i in 0..k * k {
            b.push_constant(i, i, 1.0);
        }
        for (e, &(i, j)) in edges.iter().enumerate() {
            b.push_entry(i, i, e, 1.0);
            b.push_entry(j, j, e, 1.0);
            b.push_entry(i.max(j), i.min(j), e, -1.0);
            if symmetry == Symmetry::Full {
                b.push_entry(i.min(j), i.max(j), e, -1.0);
            }
        }
        let asm = b.build().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let theta: Vec<f64> = (0..edges.len())
            .map(|_| rng.random_range(0.5..2.0))
            .collect();
        let values = asm.values(&theta).unwrap();
        (asm.structure().clone(), values)
    }

    fn random_rhs(n: usize, k: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        DMatrix::from_fn(n, k, |_, _| rng.random_range(-1.0..1.0))
    }

    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// The extracted factor, its level schedules and the kernel loops reproduce faer's solve, for
    /// a simplicial (small grid) and a supernodal (larger grid) factor, 1 and 3 right-hand sides.
    #[test]
    fn level_scheduled_solve_matches_faer() {
        let mut kinds = Vec::new();
        for (k_grid, symmetry) in [(6, Symmetry::Lower), (150, Symmetry::Full)] {
            let (s, values) = grid(k_grid, symmetry, 7);
            let chol = FaerCholesky::factor(&s, &values, Kind::Llt).unwrap();
            let factor = LowerFactor::from_faer(chol.symbolic(), chol.values()).unwrap();
            assert_eq!(factor.columns.val.len(), factor.rows().val.len());
            kinds.push(chol_kind(&chol));
            for k in [1, 3] {
                let b = random_rhs(s.nrows(), k, 11);
                let mut expected = b.clone();
                crate::Factorization::solve_in_place(&chol, &mut expected).unwrap();
                let mut got = b.as_slice().to_vec();
                factor.solve_cpu(&mut got, k);
                let err = max_rel(&got, expected.as_slice());
                assert!(
                    err < 1e-12,
                    "grid {k_grid} k {k}: {err:e} ({})",
                    chol_kind(&chol)
                );
            }
        }
        // Both of faer's factor layouts were extracted.
        assert!(kinds[0].contains("simplicial"), "{kinds:?}");
        assert!(kinds[1].contains("supernodal"), "{kinds:?}");
    }

    fn chol_kind(chol: &FaerCholesky) -> String {
        crate::Factorization::describe(chol)
    }

    /// Rows of one level never read a row of the same or a later level (the condition that makes
    /// one parallel launch per level correct), and every row is scheduled exactly once.
    #[test]
    fn schedules_respect_dependencies() {
        let (s, values) = grid(30, Symmetry::Lower, 3);
        let chol = FaerCholesky::factor(&s, &values, Kind::Llt).unwrap();
        let factor = LowerFactor::from_faer(chol.symbolic(), chol.values()).unwrap();
        for (t, sched) in [
            (factor.rows(), factor.forward_schedule()),
            (factor.columns.clone(), factor.backward_schedule()),
        ] {
            let mut level_of = vec![usize::MAX; factor.n];
            for l in 0..sched.levels() {
                for &r in &sched.order[sched.level_ptr[l]..sched.level_ptr[l + 1]] {
                    assert_eq!(level_of[r as usize], usize::MAX, "row {r} scheduled twice");
                    level_of[r as usize] = l;
                }
            }
            assert!(level_of.iter().all(|&l| l != usize::MAX));
            for r in 0..factor.n {
                for e in t.ptr[r] as usize..t.ptr[r + 1] as usize {
                    let j = t.idx[e] as usize;
                    if j != r {
                        assert!(level_of[j] < level_of[r], "row {r} reads row {j}");
                    }
                }
            }
            assert!(sched.levels() < factor.n, "no parallelism found");
        }
    }

    /// The full CSR the GPU uploads (the iterative solvers' `Csr`) multiplies like the stored
    /// matrix, for one-triangle and full storage.
    #[test]
    fn full_csr_multiplies_like_the_structure() {
        for symmetry in [Symmetry::Lower, Symmetry::Full] {
            let (s, values) = grid(9, symmetry, 5);
            let csr = crate::backend::cpu::csr::Csr::new(&s, &values);
            let x = random_rhs(s.nrows(), 2, 8);
            let n = s.nrows();
            let mut y = vec![0.0; 2 * n];
            for (xc, yc) in x.as_slice().chunks(n).zip(y.chunks_mut(n)) {
                csr.mul(xc, yc, false);
            }
            let expected = crate::sparse::mul_dense(&s, &values, &x);
            assert!(max_rel(&y, expected.as_slice()) < 1e-14, "{symmetry:?}");
        }
    }

    /// The scatter kernel's loop equals the tape's CPU gradient scatter.
    #[test]
    fn scatter_matches_accumulate_outer() {
        for symmetry in [Symmetry::Lower, Symmetry::Full] {
            let (s, _) = grid(7, symmetry, 2);
            let (n, k) = (s.nrows(), 3);
            let (lambda, x) = (random_rhs(n, k, 1), random_rhs(n, k, 2));
            let (rows, cols) = entry_coordinates(&s).unwrap();
            let got = scatter_cpu(
                &rows,
                &cols,
                symmetry == Symmetry::Lower,
                lambda.as_slice(),
                x.as_slice(),
                n,
                k,
            );
            let mut expected = vec![0.0; s.nnz()];
            accumulate_outer(&s, &lambda, &x, -1.0, &mut expected).unwrap();
            assert!(max_rel(&got, &expected) < 1e-14, "{symmetry:?}");
        }
    }
}
