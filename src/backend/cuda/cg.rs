//! The iterative path: Jacobi-preconditioned CG on all columns at once (CSR SpMM, per-column
//! step lengths), f64.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, PushKernelArg};
use nalgebra::DMatrix;

use super::device::{col_dots, download_into, driver, gpu, grid, upload_matrix, DeviceCsr, Gpu};
use super::plan::index32;
use crate::backend::cpu::csr::Csr;
use crate::backend::cpu::iterative::precond::jacobi;
use crate::error::{Error, Result};
use crate::solve::{Factor, Factorization, Iterative, Krylov, Preconditioner};
use crate::sparse::Structure;

/// Jacobi-preconditioned CG on the GPU, all columns at once.
struct CgGpu {
    gpu: Arc<Gpu>,
    n: usize,
    a: DeviceCsr,
    inv_diag: CudaSlice<f64>,
    settings: Iterative,
}

pub(crate) fn factor_iterative(
    structure: &Arc<Structure>,
    values: &[f64],
    settings: &Iterative,
    ordinal: usize,
) -> Result<Arc<Factor>> {
    if settings.method != Krylov::Cg || settings.preconditioner != Preconditioner::Jacobi {
        return Err(Error::Unsupported {
            reason: format!(
                "the GPU iterative path offers CG with Jacobi, not {:?} with {:?}",
                settings.method, settings.preconditioner
            ),
        });
    }
    let g = gpu(ordinal)?;
    let csr = Csr::new(structure, values);
    let inv_diag = jacobi(&csr, false)?;
    Ok(Arc::new(CgGpu {
        a: DeviceCsr::upload(&g, &csr)?,
        inv_diag: g.stream.clone_htod(&inv_diag).map_err(driver("upload"))?,
        n: csr.n,
        settings: settings.clone(),
        gpu: g,
    }))
}

/// Marks the columns whose relative residual √rr_c / ‖b_c‖ reached `tol` and returns the
/// largest one; a non-finite residual is [`Error::NotConverged`] at iteration `it`.
fn mark_converged(
    rr: &[f64],
    b_norms: &[f64],
    tol: f64,
    it: usize,
    done: &mut [bool],
) -> Result<f64> {
    let mut worst = 0.0f64;
    for ((&rr, &bn), done) in rr.iter().zip(b_norms).zip(done.iter_mut()) {
        let rel = if bn > 0.0 { rr.sqrt() / bn } else { 0.0 };
        if !rel.is_finite() {
            return Err(Error::NotConverged {
                iterations: it,
                relative_residual: rel,
            });
        }
        *done = *done || rel <= tol;
        worst = worst.max(rel);
    }
    Ok(worst)
}

impl CgGpu {
    /// z ← D⁻¹ r on all k columns (the Jacobi preconditioner, one launch).
    fn precondition(&self, r: &CudaSlice<f64>, z: &mut CudaSlice<f64>, k: usize) -> Result<()> {
        let (g, n) = (&*self.gpu, self.n);
        let (n32, k32) = (index32(n, "n")?, index32(k, "k")?);
        let mut l = g.stream.launch_builder(&g.util.jacobi);
        l.arg(&n32).arg(&k32).arg(&self.inv_diag).arg(r).arg(z);
        // SAFETY: matches `jacobi`; r and z hold n·k values, inv_diag n.
        unsafe { l.launch(grid(n * k)?) }.map_err(driver("jacobi"))?;
        Ok(())
    }

    fn solve_host(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        let (g, n, k) = (&*self.gpu, self.n, rhs.ncols());
        if k == 0 {
            return Ok(());
        }
        let (n32, k32) = (index32(n, "n")?, index32(k, "k")?);
        let st = &g.stream;
        let b = upload_matrix(g, rhs)?;
        let b_norms: Vec<f64> = col_dots(g, &b, &b, n, k)?
            .iter()
            .map(|v| v.sqrt())
            .collect();
        let mut x = st.alloc_zeros::<f64>(n * k).map_err(driver("allocation"))?;
        let mut r = st.clone_dtod(&b).map_err(driver("copy"))?;
        let mut z = st.alloc_zeros::<f64>(n * k).map_err(driver("allocation"))?;
        let mut q = st.alloc_zeros::<f64>(n * k).map_err(driver("allocation"))?;
        self.precondition(&r, &mut z, k)?;
        let mut p = st.clone_dtod(&z).map_err(driver("copy"))?;
        let mut rz = col_dots(g, &r, &z, n, k)?;
        let tol = self.settings.relative_tolerance;
        let mut done: Vec<bool> = b_norms.iter().map(|&bn| bn == 0.0).collect();
        let mut coefficients = st.alloc_zeros::<f64>(k).map_err(driver("allocation"))?;
        for it in 1..=self.settings.max_iterations {
            if done.iter().all(|&d| d) {
                break;
            }
            self.a.mul(g, &p, &mut q, n, k)?;
            let pq = col_dots(g, &p, &q, n, k)?;
            let alpha: Vec<f64> = (0..k)
                .map(|c| if done[c] { 0.0 } else { rz[c] / pq[c] })
                .collect();
            st.memcpy_htod(&alpha, &mut coefficients)
                .map_err(driver("upload"))?;
            let mut l = st.launch_builder(&g.util.cg_step);
            l.arg(&n32)
                .arg(&k32)
                .arg(&coefficients)
                .arg(&p)
                .arg(&q)
                .arg(&mut x)
                .arg(&mut r);
            // SAFETY: matches `cg_step`; coefficients has k values, vectors n·k.
            unsafe { l.launch(grid(n * k)?) }.map_err(driver("cg_step"))?;
            let rr = col_dots(g, &r, &r, n, k)?;
            let worst = mark_converged(&rr, &b_norms, tol, it, &mut done)?;
            if done.iter().all(|&d| d) {
                break;
            }
            if it == self.settings.max_iterations {
                return Err(Error::NotConverged {
                    iterations: it,
                    relative_residual: worst,
                });
            }
            self.precondition(&r, &mut z, k)?;
            let rz_new = col_dots(g, &r, &z, n, k)?;
            let beta: Vec<f64> = (0..k)
                .map(|c| if done[c] { 0.0 } else { rz_new[c] / rz[c] })
                .collect();
            rz = rz_new;
            st.memcpy_htod(&beta, &mut coefficients)
                .map_err(driver("upload"))?;
            let mut l = st.launch_builder(&g.util.cg_direction);
            l.arg(&n32).arg(&k32).arg(&coefficients).arg(&z).arg(&mut p);
            // SAFETY: matches `cg_direction`; coefficients has k values, z and p n·k.
            unsafe { l.launch(grid(n * k)?) }.map_err(driver("cg_direction"))?;
        }
        if self.settings.max_iterations == 0 && !done.iter().all(|&d| d) {
            return Err(Error::NotConverged {
                iterations: 0,
                relative_residual: 1.0,
            });
        }
        download_into(g, &x, rhs)
    }
}

impl Factorization for CgGpu {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_host(rhs)
    }
    /// CG runs on symmetric A only, where Aᵀ = A.
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_host(rhs)
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn is_iterative(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!(
            "GPU CG + Jacobi on {}, relative tolerance {:e}",
            self.gpu.name, self.settings.relative_tolerance
        )
    }
}
