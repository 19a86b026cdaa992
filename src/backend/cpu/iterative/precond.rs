//! The preconditioners for Krylov iterations: Jacobi, incomplete Cholesky IC(0) and incomplete
//! LU ILU(0) on the matrix's own pattern (of its [`Csr`] form).

pub(crate) use crate::backend::cpu::csr::Csr;
use crate::error::{Error, Result};
use crate::solve::Preconditioner;

/// A computed preconditioner.
pub(crate) enum Precond {
    Identity,
    Jacobi(Vec<f64>),
    /// Rows of L (the lower pattern of A, diagonal last in each row).
    Ic0(Csr),
    /// L (unit, strictly lower) and U in one CSR on A's pattern; `diag[r]` is U_rr's position.
    Ilu0(Csr, Vec<usize>),
    /// A symmetric f32 factorization of A itself (GMRES-IR for [`Precision::Mixed`]).
    ///
    /// [`Precision::Mixed`]: crate::Precision::Mixed
    Single(std::sync::Arc<crate::backend::cpu::cholesky::FaerCholesky<f32>>),
}

impl Precond {
    pub(crate) fn new(kind: Preconditioner, a: &Csr, absolute_jacobi: bool) -> Result<Self> {
        match kind {
            Preconditioner::None => Ok(Precond::Identity),
            Preconditioner::Jacobi => jacobi(a, absolute_jacobi).map(Precond::Jacobi),
            Preconditioner::Ic0 => ic0(a).map(Precond::Ic0),
            Preconditioner::Ilu0 => ilu0(a).map(|(lu, d)| Precond::Ilu0(lu, d)),
        }
    }

    /// z = M⁻¹ r (or M⁻ᵀ r).
    pub(crate) fn apply(&self, r: &[f64], z: &mut [f64], transpose: bool) {
        match self {
            Precond::Identity => z.copy_from_slice(r),
            Precond::Single(factor) => {
                // Symmetric: M⁻ᵀ = M⁻¹.
                let mut single: Vec<f32> = r.iter().map(|&v| v as f32).collect();
                factor.solve_slice(&mut single, r.len(), 1);
                for (zi, s) in z.iter_mut().zip(&single) {
                    *zi = f64::from(*s);
                }
            }
            Precond::Jacobi(inv) => {
                for ((zi, ri), di) in z.iter_mut().zip(r).zip(inv) {
                    *zi = ri * di;
                }
            }
            Precond::Ic0(l) => {
                // L y = r (rows), then Lᵀ z = y (column sweep over L's rows).
                z.copy_from_slice(r);
                for i in 0..l.n {
                    let (s, e) = (l.ptr[i], l.ptr[i + 1] - 1);
                    let dot: f64 = (s..e).map(|p| l.val[p] * z[l.idx[p]]).sum();
                    z[i] = (z[i] - dot) / l.val[e];
                }
                for i in (0..l.n).rev() {
                    let (s, e) = (l.ptr[i], l.ptr[i + 1] - 1);
                    z[i] /= l.val[e];
                    let zi = z[i];
                    for p in s..e {
                        z[l.idx[p]] -= l.val[p] * zi;
                    }
                }
            }
            Precond::Ilu0(lu, diag) => {
                z.copy_from_slice(r);
                let n = lu.n;
                if transpose {
                    // Uᵀ y = r (forward, column sweep over U's rows), then Lᵀ z = y (backward).
                    for i in 0..n {
                        z[i] /= lu.val[diag[i]];
                        let zi = z[i];
                        for p in diag[i] + 1..lu.ptr[i + 1] {
                            z[lu.idx[p]] -= lu.val[p] * zi;
                        }
                    }
                    for i in (0..n).rev() {
                        let zi = z[i];
                        for p in lu.ptr[i]..diag[i] {
                            z[lu.idx[p]] -= lu.val[p] * zi;
                        }
                    }
                } else {
                    for i in 0..n {
                        let dot: f64 = (lu.ptr[i]..diag[i]).map(|p| lu.val[p] * z[lu.idx[p]]).sum();
                        z[i] -= dot;
                    }
                    for i in (0..n).rev() {
                        let dot: f64 = (diag[i] + 1..lu.ptr[i + 1])
                            .map(|p| lu.val[p] * z[lu.idx[p]])
                            .sum();
                        z[i] = (z[i] - dot) / lu.val[diag[i]];
                    }
                }
            }
        }
    }
}

/// Jacobi: 1 / diag(A) (1 / |diag(A)| when `absolute`), naming a zero or missing diagonal entry.
pub(crate) fn jacobi(a: &Csr, absolute: bool) -> Result<Vec<f64>> {
    let diag = a.diagonal_positions("Jacobi preconditioner")?;
    diag.iter()
        .enumerate()
        .map(|(r, &p)| {
            let d = if absolute { a.val[p].abs() } else { a.val[p] };
            if d == 0.0 {
                Err(Error::Preconditioner {
                    preconditioner: "Jacobi",
                    row: r,
                    reason: format!("diagonal entry ({r}, {r}) is zero"),
                })
            } else {
                Ok(1.0 / d)
            }
        })
        .collect()
}

/// IC(0): L on the lower pattern of A with (L Lᵀ)_ij = A_ij on that pattern.
fn ic0(a: &Csr) -> Result<Csr> {
    let n = a.n;
    let mut ptr = vec![0usize; n + 1];
    let mut idx = Vec::new();
    let mut val = Vec::new();
    for r in 0..n {
        for e in a.ptr[r]..a.ptr[r + 1] {
            if a.idx[e] <= r {
                idx.push(a.idx[e]);
                val.push(a.val[e]);
            }
        }
        if idx.last() != Some(&r) {
            return Err(Error::Preconditioner {
                preconditioner: "IC(0)",
                row: r,
                reason: format!("diagonal entry ({r}, {r}) is not stored"),
            });
        }
        ptr[r + 1] = idx.len();
    }
    for i in 0..n {
        let (s, d) = (ptr[i], ptr[i + 1] - 1);
        for p in s..d {
            let k = idx[p];
            // l_ik = (a_ik − Σ_{j<k} l_ij l_kj) / l_kk: merge rows i and k over columns < k.
            let (mut q, kd) = (ptr[k], ptr[k + 1] - 1);
            let mut sum = 0.0;
            for pp in s..p {
                let j = idx[pp];
                while q < kd && idx[q] < j {
                    q += 1;
                }
                if q < kd && idx[q] == j {
                    sum += val[pp] * val[q];
                }
            }
            val[p] = (val[p] - sum) / val[kd];
        }
        let pivot = val[d] - (s..d).map(|p| val[p] * val[p]).sum::<f64>();
        if !(pivot > 0.0 && pivot.is_finite()) {
            return Err(Error::Preconditioner {
                preconditioner: "IC(0)",
                row: i,
                reason: format!(
                    "pivot {pivot:e}: the matrix is not an M-matrix or not positive definite — use Jacobi or a direct solver"
                ),
            });
        }
        val[d] = pivot.sqrt();
    }
    Ok(Csr { n, ptr, idx, val })
}

/// ILU(0) (IKJ variant) on the full pattern of A.
fn ilu0(a: &Csr) -> Result<(Csr, Vec<usize>)> {
    let n = a.n;
    let diag = a.diagonal_positions("ILU(0)")?;
    let mut val = a.val.clone();
    let mut position = vec![usize::MAX; n];
    for i in 0..n {
        let range = a.ptr[i]..a.ptr[i + 1];
        for p in range.clone() {
            position[a.idx[p]] = p;
        }
        for p in a.ptr[i]..diag[i] {
            let k = a.idx[p];
            val[p] /= val[diag[k]];
            let lik = val[p];
            for q in diag[k] + 1..a.ptr[k + 1] {
                let slot = position[a.idx[q]];
                if slot != usize::MAX {
                    val[slot] -= lik * val[q];
                }
            }
        }
        for p in range {
            position[a.idx[p]] = usize::MAX;
        }
        let pivot = val[diag[i]];
        if pivot == 0.0 || !pivot.is_finite() {
            return Err(Error::Preconditioner {
                preconditioner: "ILU(0)",
                row: i,
                reason: format!("pivot {pivot:e} — use Jacobi or a direct solver"),
            });
        }
    }
    Ok((
        Csr {
            n,
            ptr: a.ptr.clone(),
            idx: a.idx.clone(),
            val,
        },
        diag,
    ))
}
