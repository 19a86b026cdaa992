//! The direct path: faer's LLᵀ on the CPU, the factor uploaded once, level-scheduled triangular
//! solves for all columns, optional f64 refinement of f32 solves, and the fused adjoint (transpose
//! solve + gradient scatter kernel).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};
use nalgebra::DMatrix;

use super::device::{col_dots, download_into, driver, gpu, grid, upload_matrix, DeviceCsr, Gpu};
use super::kernels::Kernels;
use super::plan::{entry_coordinates, index32, LowerFactor, Schedule, TriangularRows};
use crate::backend::cpu::cholesky::{FaerCholesky, Kind};
use crate::backend::cpu::csr::Csr;
use crate::backend::Precision;
use crate::error::{Error, Result};
use crate::solve::{Adjoint, Factor, Factorization};
use crate::sparse::{Structure, Symmetry};

/// Refinement stops when every column's ‖b − A x‖/‖b‖ is at most this.
const REFINEMENT_TOLERANCE: f64 = 1e-12;
/// Refinement steps before [`Error::NotConverged`].
const REFINEMENT_STEPS: usize = 30;

/// Device values of the factor in the solve precision.
trait Real: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {
    fn kernels(g: &Gpu) -> &Kernels;
    fn from_f64(v: f64) -> Self;
}
impl Real for f64 {
    fn kernels(g: &Gpu) -> &Kernels {
        &g.f64
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl Real for f32 {
    fn kernels(g: &Gpu) -> &Kernels {
        &g.f32
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// A triangular matrix and its level schedule on the device.
struct DeviceTriangle<T> {
    ptr: CudaSlice<i32>,
    idx: CudaSlice<i32>,
    val: CudaSlice<T>,
    order: CudaSlice<i32>,
    level_ptr: Vec<usize>,
}

impl<T: Real> DeviceTriangle<T> {
    fn upload(g: &Gpu, t: &TriangularRows, s: &Schedule) -> Result<Self> {
        let st = &g.stream;
        let val: Vec<T> = t.val.iter().map(|&v| T::from_f64(v)).collect();
        Ok(DeviceTriangle {
            ptr: st.clone_htod(&t.ptr).map_err(driver("upload"))?,
            idx: st.clone_htod(&t.idx).map_err(driver("upload"))?,
            val: st.clone_htod(&val).map_err(driver("upload"))?,
            order: st.clone_htod(&s.order).map_err(driver("upload"))?,
            level_ptr: s.level_ptr.clone(),
        })
    }

    /// x ← T⁻¹ x for n×k column-major x, one launch per level.
    fn solve(&self, g: &Gpu, x: &mut CudaSlice<T>, n: usize, k: usize) -> Result<()> {
        let (n32, k32) = (index32(n, "n")?, index32(k, "k")?);
        let f = &T::kernels(g).tri_level;
        for l in 0..self.level_ptr.len() - 1 {
            let (start, end) = (self.level_ptr[l], self.level_ptr[l + 1]);
            let (m, offset) = (index32(end - start, "level")?, index32(start, "level")?);
            let mut b = g.stream.launch_builder(f);
            b.arg(&m)
                .arg(&k32)
                .arg(&n32)
                .arg(&offset)
                .arg(&self.order)
                .arg(&self.ptr)
                .arg(&self.idx)
                .arg(&self.val)
                .arg(&mut *x);
            // SAFETY: argument types and order match `tri_level`; `order`, `ptr`, `idx`, `val` come
            // from one validated plan, x holds n·k values and the grid covers m·k threads.
            unsafe { b.launch(grid((end - start) * k)?) }.map_err(driver("tri_level"))?;
        }
        Ok(())
    }
}

/// The factor L (and Lᵀ) of P A Pᵀ in one precision.
struct DeviceFactor<T> {
    lower: DeviceTriangle<T>,
    upper: DeviceTriangle<T>,
}

impl<T: Real> DeviceFactor<T> {
    fn upload(g: &Gpu, l: &LowerFactor) -> Result<Self> {
        Ok(DeviceFactor {
            lower: DeviceTriangle::upload(g, &l.rows(), &l.forward_schedule())?,
            upper: DeviceTriangle::upload(g, &l.columns, &l.backward_schedule())?,
        })
    }

    /// x (f64, original order) ← or += A⁻¹ b (f64, original order), solved in T.
    fn solve(
        &self,
        g: &Gpu,
        perm: &CudaSlice<i32>,
        b: &CudaSlice<f64>,
        x: &mut CudaSlice<f64>,
        (n, k): (usize, usize),
        add: bool,
    ) -> Result<()> {
        let (n32, k32, add32) = (index32(n, "n")?, index32(k, "k")?, i32::from(add));
        let kern = T::kernels(g);
        let mut y = g
            .stream
            .alloc_zeros::<T>(n * k)
            .map_err(driver("allocation"))?;
        let cfg = grid(n * k)?;
        let mut launch = g.stream.launch_builder(&kern.permute_in);
        launch.arg(&n32).arg(&k32).arg(perm).arg(b).arg(&mut y);
        // SAFETY: matches `permute_in(int, int, const int*, const double*, REAL*)`; n·k threads.
        unsafe { launch.launch(cfg) }.map_err(driver("permute_in"))?;
        self.lower.solve(g, &mut y, n, k)?;
        self.upper.solve(g, &mut y, n, k)?;
        let mut launch = g.stream.launch_builder(&kern.permute_out);
        launch
            .arg(&n32)
            .arg(&k32)
            .arg(&add32)
            .arg(perm)
            .arg(&y)
            .arg(x);
        // SAFETY: matches `permute_out(int, int, int, const int*, const REAL*, double*)`.
        unsafe { launch.launch(cfg) }.map_err(driver("permute_out"))?;
        Ok(())
    }
}

enum Values {
    F64(DeviceFactor<f64>),
    F32(DeviceFactor<f32>),
}

/// A Cholesky factorization whose solves and gradient scatter run on the GPU.
struct DirectGpu {
    gpu: Arc<Gpu>,
    n: usize,
    precision: Precision,
    perm: CudaSlice<i32>,
    factor: Values,
    /// A in full CSR (for refinement residuals), with [`Precision::Mixed`].
    a: Option<DeviceCsr>,
    /// Row and column of each stored entry, and whether storage is one triangle.
    entries: (CudaSlice<i32>, CudaSlice<i32>, bool),
    nnz: usize,
    levels: (usize, usize),
}

pub(crate) fn factor_direct(
    structure: &Arc<Structure>,
    values: &[f64],
    ordinal: usize,
    precision: Precision,
) -> Result<Arc<Factor>> {
    let g = gpu(ordinal)?;
    let chol = FaerCholesky::factor(structure, values, Kind::Llt)?;
    let l = LowerFactor::from_faer(chol.symbolic(), chol.values())?;
    drop(chol);
    let factor = match precision {
        Precision::F32 | Precision::Mixed => Values::F32(DeviceFactor::upload(&g, &l)?),
        // F64, and Auto (f64 on the GPU).
        _ => Values::F64(DeviceFactor::upload(&g, &l)?),
    };
    let a = match precision {
        Precision::Mixed => Some(DeviceCsr::upload(&g, &Csr::new(structure, values))?),
        _ => None,
    };
    let (rows, cols) = entry_coordinates(structure)?;
    let entries = (
        g.stream.clone_htod(&rows).map_err(driver("upload"))?,
        g.stream.clone_htod(&cols).map_err(driver("upload"))?,
        structure.symmetry() == Symmetry::Lower,
    );
    let levels = (
        l.forward_schedule().levels(),
        l.backward_schedule().levels(),
    );
    Ok(Arc::new(DirectGpu {
        perm: g.stream.clone_htod(&l.perm).map_err(driver("upload"))?,
        n: l.n,
        precision,
        factor,
        a,
        entries,
        nnz: structure.nnz(),
        levels,
        gpu: g,
    }))
}

impl DirectGpu {
    /// The device solution of A X = B for a device B.
    fn solve_device(&self, b: &CudaSlice<f64>, k: usize) -> Result<CudaSlice<f64>> {
        let (g, n) = (&*self.gpu, self.n);
        let mut x = g
            .stream
            .alloc_zeros::<f64>(n * k)
            .map_err(driver("allocation"))?;
        match (&self.factor, &self.a) {
            (Values::F64(f), _) => f.solve(g, &self.perm, b, &mut x, (n, k), false)?,
            (Values::F32(f), None) => f.solve(g, &self.perm, b, &mut x, (n, k), false)?,
            (Values::F32(f), Some(a)) => {
                // Iterative refinement: x += A₃₂⁻¹ r, r = b − A x in f64.
                let b_norms = col_dots(g, b, b, n, k)?;
                let mut r = g.stream.clone_dtod(b).map_err(driver("copy"))?;
                for step in 1..=REFINEMENT_STEPS {
                    f.solve(g, &self.perm, &r, &mut x, (n, k), true)?;
                    a.residual(g, b, &x, &mut r, n, k)?;
                    let worst = col_dots(g, &r, &r, n, k)?
                        .iter()
                        .zip(&b_norms)
                        .map(|(rr, bb)| if *bb > 0.0 { (rr / bb).sqrt() } else { 0.0 })
                        .fold(0.0f64, |m, v| if v.is_nan() { f64::NAN } else { m.max(v) });
                    if worst <= REFINEMENT_TOLERANCE {
                        break;
                    }
                    if step == REFINEMENT_STEPS || !worst.is_finite() {
                        return Err(Error::NotConverged {
                            iterations: step,
                            relative_residual: worst,
                        });
                    }
                }
            }
        }
        Ok(x)
    }

    fn solve_host(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        if rhs.ncols() == 0 {
            return Ok(());
        }
        let b = upload_matrix(&self.gpu, rhs)?;
        let x = self.solve_device(&b, rhs.ncols())?;
        download_into(&self.gpu, &x, rhs)
    }
}

impl Factorization for DirectGpu {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_host(rhs)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_host(rhs)
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn describe(&self) -> String {
        format!(
            "GPU LLᵀ on {} ({:?}; {} + {} solve levels)",
            self.gpu.name, self.precision, self.levels.0, self.levels.1
        )
    }
    fn precision(&self) -> Precision {
        match self.precision {
            Precision::Auto => Precision::F64,
            p => p,
        }
    }
    fn method(&self) -> Option<crate::solve::Method> {
        Some(crate::solve::Method::Cholesky)
    }
    fn fused_adjoint(
        &self,
        structure: &Structure,
        g_bar: &DMatrix<f64>,
        x: &DMatrix<f64>,
        want_a: bool,
    ) -> Result<Option<Adjoint>> {
        let (g, n, k) = (&*self.gpu, self.n, g_bar.ncols());
        if structure.nnz() != self.nnz || k == 0 {
            return Ok(None);
        }
        let gb = upload_matrix(g, g_bar)?;
        let lam = self.solve_device(&gb, k)?;
        let mut lambda = DMatrix::zeros(n, k);
        download_into(g, &lam, &mut lambda)?;
        if !want_a {
            return Ok(Some(Adjoint {
                lambda,
                grad_values: None,
            }));
        }
        let xd = upload_matrix(g, x)?;
        let mut out = g
            .stream
            .alloc_zeros::<f64>(self.nnz)
            .map_err(driver("allocation"))?;
        let (nnz32, n32, k32) = (
            index32(self.nnz, "nnz")?,
            index32(n, "n")?,
            index32(k, "k")?,
        );
        let lower = i32::from(self.entries.2);
        let mut l = g.stream.launch_builder(&g.util.grad_scatter);
        l.arg(&nnz32)
            .arg(&n32)
            .arg(&k32)
            .arg(&lower)
            .arg(&self.entries.0)
            .arg(&self.entries.1)
            .arg(&lam)
            .arg(&xd)
            .arg(&mut out);
        // SAFETY: matches `grad_scatter`; rows/cols hold nnz entries < n, lam and x n·k values.
        unsafe { l.launch(grid(self.nnz)?) }.map_err(driver("grad_scatter"))?;
        let ga = g.stream.clone_dtoh(&out).map_err(driver("download"))?;
        Ok(Some(Adjoint {
            lambda,
            grad_values: Some(ga),
        }))
    }
}
