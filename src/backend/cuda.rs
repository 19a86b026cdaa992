//! The GPU backend (cudarc, CUDA loaded at run time). All `unsafe` code of the crate is here, in
//! kernel launches; everything else goes through cudarc's safe API.
//!
//! * Direct path ([`factor_direct`]): faer's symbolic analysis and numeric LLᵀ on the CPU, the
//!   factor uploaded once, forward and adjoint solves for all k columns as level-scheduled
//!   triangular-solve kernels (one launch per level, one thread per (row, column); schedules from
//!   `plan.rs`), the gradient scatter as one kernel over the stored entries. f64, f32,
//!   or f32 solves with f64 iterative refinement ([`Precision`]).
//! * Iterative path ([`factor_iterative`]): Jacobi-preconditioned CG on all columns at once (CSR
//!   SpMM, per-column step lengths), f64.
//!
//! Kernels are compiled with NVRTC for the device's compute capability when a device is first
//! used and cached per ordinal.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, DriverError,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use nalgebra::DMatrix;

use super::plan::{entry_coordinates, index32, indices32, LowerFactor, Schedule, TriangularRows};
use super::Precision;
use crate::error::{Error, Result};
use crate::solve::iterative::precond::{jacobi, Csr};
use crate::solve::{
    cholesky::FaerCholesky, Adjoint, Factor, Factorization, Iterative, Krylov, Preconditioner,
};
use crate::sparse::{Structure, Symmetry};

/// Refinement stops when every column's ‖b − A x‖/‖b‖ is at most this.
const REFINEMENT_TOLERANCE: f64 = 1e-12;
/// Refinement steps before [`Error::NotConverged`].
const REFINEMENT_STEPS: usize = 30;
const BLOCK: u32 = 256;

/// Kernels for one floating-point type (`REAL` is `double` or `float`); the precision-crossing
/// and f64-only kernels are in the `double` module.
const KERNELS: &str = r#"
extern "C" __global__ void tri_level(int m, int k, int n, int offset, const int* __restrict__ order,
    const int* __restrict__ ptr, const int* __restrict__ idx, const REAL* __restrict__ val, REAL* x) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)m * k) return;
  int r = order[offset + (int)(t % m)];
  REAL* xc = x + (t / m) * (long)n;
  REAL s = xc[r], d = (REAL)1;
  for (int e = ptr[r]; e < ptr[r + 1]; ++e) {
    int j = idx[e];
    if (j == r) d = val[e]; else s -= val[e] * xc[j];
  }
  xc[r] = s / d;
}
extern "C" __global__ void permute_in(int n, int k, const int* __restrict__ perm,
    const double* __restrict__ b, REAL* y) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int i = (int)(t % n);
  y[t] = (REAL)b[perm[i] + c * n];
}
extern "C" __global__ void permute_out(int n, int k, int add, const int* __restrict__ perm,
    const REAL* __restrict__ y, double* x) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int i = (int)(t % n);
  double v = (double)y[t];
  if (add) x[perm[i] + c * n] += v; else x[perm[i] + c * n] = v;
}
"#;

const F64_KERNELS: &str = r#"
extern "C" __global__ void residual(int n, int k, const int* __restrict__ ptr,
    const int* __restrict__ idx, const double* __restrict__ val, const double* __restrict__ b,
    const double* __restrict__ x, double* r) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int row = (int)(t % n);
  const double* xc = x + c * n;
  double s = b[t];
  for (int e = ptr[row]; e < ptr[row + 1]; ++e) s -= val[e] * xc[idx[e]];
  r[t] = s;
}
extern "C" __global__ void spmm(int n, int k, const int* __restrict__ ptr,
    const int* __restrict__ idx, const double* __restrict__ val, const double* __restrict__ x,
    double* y) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int row = (int)(t % n);
  const double* xc = x + c * n;
  double s = 0.0;
  for (int e = ptr[row]; e < ptr[row + 1]; ++e) s += val[e] * xc[idx[e]];
  y[t] = s;
}
// out[c] += Σ_i a[i, c] b[i, c]; grid (blocks over rows, k), 256 threads.
extern "C" __global__ void col_dot(int n, const double* __restrict__ a,
    const double* __restrict__ b, double* out) {
  __shared__ double part[256];
  long c = blockIdx.y;
  double s = 0.0;
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    s += a[i + c * n] * b[i + c * n];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(&out[c], part[0]);
}
// x[:, c] += alpha[c] p[:, c]; r[:, c] -= alpha[c] q[:, c]
extern "C" __global__ void cg_step(int n, int k, const double* __restrict__ alpha,
    const double* __restrict__ p, const double* __restrict__ q, double* x, double* r) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  double a = alpha[t / n];
  x[t] += a * p[t];
  r[t] -= a * q[t];
}
// p = z + beta[c] p
extern "C" __global__ void cg_direction(int n, int k, const double* __restrict__ beta,
    const double* __restrict__ z, double* p) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  p[t] = z[t] + beta[t / n] * p[t];
}
extern "C" __global__ void jacobi(int n, int k, const double* __restrict__ inv_diag,
    const double* __restrict__ r, double* z) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  z[t] = inv_diag[t % n] * r[t];
}
// Ā_e = −Σ_c (Λ_ic X_jc + [lower, i ≠ j] Λ_jc X_ic)
extern "C" __global__ void grad_scatter(int nnz, int n, int k, int lower,
    const int* __restrict__ rows, const int* __restrict__ cols, const double* __restrict__ lam,
    const double* __restrict__ x, double* out) {
  long e = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (e >= nnz) return;
  int i = rows[e], j = cols[e];
  double s = 0.0;
  for (long c = 0; c < k; ++c) {
    s += lam[i + c * n] * x[j + c * n];
    if (lower && i != j) s += lam[j + c * n] * x[i + c * n];
  }
  out[e] = -s;
}
"#;

fn driver(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Unsupported {
        reason: format!("GPU: {what} failed: {e}"),
    }
}

/// The kernels of one module.
struct Kernels {
    tri_level: CudaFunction,
    permute_in: CudaFunction,
    permute_out: CudaFunction,
}

struct F64Kernels {
    residual: CudaFunction,
    spmm: CudaFunction,
    col_dot: CudaFunction,
    cg_step: CudaFunction,
    cg_direction: CudaFunction,
    jacobi: CudaFunction,
    grad_scatter: CudaFunction,
}

/// One opened device: context, stream and compiled kernels.
pub(crate) struct Gpu {
    stream: Arc<CudaStream>,
    name: String,
    f64: Kernels,
    f32: Kernels,
    util: F64Kernels,
}

fn no_device(reason: impl Into<String>) -> Error {
    Error::NoDevice {
        reason: reason.into(),
    }
}

fn open(ordinal: usize) -> Result<Gpu> {
    // SAFETY: these only try to dlopen the libraries; nothing is called through them.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(no_device(
            "the CUDA driver library (libcuda.so) was not found on this machine",
        ));
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(no_device(
            "the NVRTC library (libnvrtc.so) was not found: install the CUDA toolkit's runtime compiler",
        ));
    }
    let count = CudaContext::device_count()
        .map_err(|e| no_device(format!("the CUDA driver failed to initialise: {e}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(no_device(format!(
            "GPU {ordinal} requested, {count} CUDA device(s) present"
        )));
    }
    let ctx = CudaContext::new(ordinal)
        .map_err(|e| no_device(format!("cannot open CUDA device {ordinal}: {e}")))?;
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| no_device(format!("cannot query device {ordinal}: {e}")))?;
    let compile = |source: String| -> Result<Arc<CudaModule>> {
        let options = CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(source, options)
            .map_err(|e| no_device(format!("NVRTC could not compile the kernels: {e}")))?;
        ctx.load_module(ptx)
            .map_err(|e| no_device(format!("cannot load the kernels on {name}: {e}")))
    };
    let load = |m: &Arc<CudaModule>, f: &str| {
        m.load_function(f)
            .map_err(|e| no_device(format!("kernel {f} missing: {e}")))
    };
    let kernels = |m: &Arc<CudaModule>| -> Result<Kernels> {
        Ok(Kernels {
            tri_level: load(m, "tri_level")?,
            permute_in: load(m, "permute_in")?,
            permute_out: load(m, "permute_out")?,
        })
    };
    let m64 = compile(format!("#define REAL double\n{KERNELS}\n{F64_KERNELS}"))?;
    let m32 = compile(format!("#define REAL float\n{KERNELS}"))?;
    Ok(Gpu {
        stream: ctx.default_stream(),
        f64: kernels(&m64)?,
        f32: kernels(&m32)?,
        util: F64Kernels {
            residual: load(&m64, "residual")?,
            spmm: load(&m64, "spmm")?,
            col_dot: load(&m64, "col_dot")?,
            cg_step: load(&m64, "cg_step")?,
            cg_direction: load(&m64, "cg_direction")?,
            jacobi: load(&m64, "jacobi")?,
            grad_scatter: load(&m64, "grad_scatter")?,
        },
        name,
    })
}

/// The opened device `ordinal` (opened and compiled once per process).
fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
    let mut gpus = GPUS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(g) = gpus.get(&ordinal) {
        return Ok(g.clone());
    }
    // cudarc panics when a driver lacks a symbol it expects; that is "no usable device" too.
    let g = catch_unwind(AssertUnwindSafe(|| open(ordinal))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        Err(no_device(format!(
            "the CUDA driver could not be used: {what}"
        )))
    })?;
    let g = Arc::new(g);
    gpus.insert(ordinal, g.clone());
    Ok(g)
}

pub(crate) fn device_info(ordinal: usize) -> Result<String> {
    let g = gpu(ordinal)?;
    let total = g
        .stream
        .context()
        .total_mem()
        .map_err(driver("memory query"))?;
    Ok(format!(
        "{} (device {ordinal}, {:.1} GiB)",
        g.name,
        total as f64 / f64::powi(1024.0, 3)
    ))
}

fn grid(elements: usize) -> Result<LaunchConfig> {
    let blocks = elements.div_ceil(BLOCK as usize).max(1);
    Ok(LaunchConfig {
        grid_dim: (index32(blocks, "thread blocks")? as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

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

/// A symmetric matrix in full CSR on the device (f64).
struct DeviceCsr {
    ptr: CudaSlice<i32>,
    idx: CudaSlice<i32>,
    val: CudaSlice<f64>,
}

impl DeviceCsr {
    /// Uploads A (full CSR, both triangles of symmetric storage; the iterative solvers' `Csr`).
    fn upload(g: &Gpu, csr: &Csr) -> Result<Self> {
        let st = &g.stream;
        Ok(DeviceCsr {
            ptr: st
                .clone_htod(&indices32(csr.ptr.iter().copied(), "nnz")?)
                .map_err(driver("upload"))?,
            idx: st
                .clone_htod(&indices32(csr.idx.iter().copied(), "index")?)
                .map_err(driver("upload"))?,
            val: st.clone_htod(&csr.val).map_err(driver("upload"))?,
        })
    }

    /// r = b − A x.
    fn residual(
        &self,
        g: &Gpu,
        b: &CudaSlice<f64>,
        x: &CudaSlice<f64>,
        r: &mut CudaSlice<f64>,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let (n32, k32) = (index32(n, "n")?, index32(k, "k")?);
        let mut l = g.stream.launch_builder(&g.util.residual);
        l.arg(&n32)
            .arg(&k32)
            .arg(&self.ptr)
            .arg(&self.idx)
            .arg(&self.val)
            .arg(b)
            .arg(x)
            .arg(r);
        // SAFETY: matches `residual`; all vectors hold n·k values, CSR arrays one plan.
        unsafe { l.launch(grid(n * k)?) }.map_err(driver("residual"))?;
        Ok(())
    }

    /// y = A x.
    fn mul(
        &self,
        g: &Gpu,
        x: &CudaSlice<f64>,
        y: &mut CudaSlice<f64>,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let (n32, k32) = (index32(n, "n")?, index32(k, "k")?);
        let mut l = g.stream.launch_builder(&g.util.spmm);
        l.arg(&n32)
            .arg(&k32)
            .arg(&self.ptr)
            .arg(&self.idx)
            .arg(&self.val)
            .arg(x)
            .arg(y);
        // SAFETY: matches `spmm`.
        unsafe { l.launch(grid(n * k)?) }.map_err(driver("spmm"))?;
        Ok(())
    }
}

/// Column-wise dot products Σ_i a_ic b_ic, copied to the host.
fn col_dots(
    g: &Gpu,
    a: &CudaSlice<f64>,
    b: &CudaSlice<f64>,
    n: usize,
    k: usize,
) -> Result<Vec<f64>> {
    let n32 = index32(n, "n")?;
    let mut out = g
        .stream
        .alloc_zeros::<f64>(k)
        .map_err(driver("allocation"))?;
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1024);
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, index32(k, "k")? as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = g.stream.launch_builder(&g.util.col_dot);
    l.arg(&n32).arg(a).arg(b).arg(&mut out);
    // SAFETY: matches `col_dot`; blockDim is the 256 its shared array holds; grid.y = k columns.
    unsafe { l.launch(cfg) }.map_err(driver("col_dot"))?;
    g.stream.clone_dtoh(&out).map_err(driver("download"))
}

fn upload_matrix(g: &Gpu, m: &DMatrix<f64>) -> Result<CudaSlice<f64>> {
    g.stream.clone_htod(m.as_slice()).map_err(driver("upload"))
}

fn download_into(g: &Gpu, d: &CudaSlice<f64>, m: &mut DMatrix<f64>) -> Result<()> {
    g.stream
        .memcpy_dtoh(d, m.as_mut_slice())
        .map_err(driver("download"))
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
    let chol = FaerCholesky::factor(structure, values, false)?;
    let l = LowerFactor::from_faer(chol.symbolic(), chol.values())?;
    drop(chol);
    let factor = match precision {
        Precision::F64 => Values::F64(DeviceFactor::upload(&g, &l)?),
        Precision::F32 | Precision::Mixed => Values::F32(DeviceFactor::upload(&g, &l)?),
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
            return Ok(Some((lambda, None)));
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
        Ok(Some((lambda, Some(ga))))
    }
}

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

impl CgGpu {
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
        let mut l = st.launch_builder(&g.util.jacobi);
        l.arg(&n32)
            .arg(&k32)
            .arg(&self.inv_diag)
            .arg(&r)
            .arg(&mut z);
        // SAFETY: matches `jacobi`; all vectors n·k, inv_diag n.
        unsafe { l.launch(grid(n * k)?) }.map_err(driver("jacobi"))?;
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
            let mut worst = 0.0f64;
            for c in 0..k {
                let rel = if b_norms[c] > 0.0 {
                    rr[c].sqrt() / b_norms[c]
                } else {
                    0.0
                };
                if !rel.is_finite() {
                    return Err(Error::NotConverged {
                        iterations: it,
                        relative_residual: rel,
                    });
                }
                done[c] = done[c] || rel <= tol;
                worst = worst.max(rel);
            }
            if done.iter().all(|&d| d) {
                break;
            }
            if it == self.settings.max_iterations {
                return Err(Error::NotConverged {
                    iterations: it,
                    relative_residual: worst,
                });
            }
            let mut l = st.launch_builder(&g.util.jacobi);
            l.arg(&n32)
                .arg(&k32)
                .arg(&self.inv_diag)
                .arg(&r)
                .arg(&mut z);
            // SAFETY: as above.
            unsafe { l.launch(grid(n * k)?) }.map_err(driver("jacobi"))?;
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
