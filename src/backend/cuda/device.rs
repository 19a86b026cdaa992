//! Opening a device (driver and NVRTC loaded at run time, kernels compiled once per ordinal),
//! launch geometry, transfers, and the device CSR matrix shared by the direct and CG paths.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaModule, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use nalgebra::DMatrix;

use super::kernels::{F64Kernels, Kernels, F64_KERNELS, KERNELS};
use super::plan::{index32, indices32};
use crate::backend::cpu::csr::Csr;
use crate::error::{Error, Result};

/// Threads per block of every launch.
pub(super) const BLOCK: u32 = 256;

pub(super) fn driver(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Device {
        reason: format!("{what} failed: {e}"),
    }
}

/// One opened device: context, stream and compiled kernels.
pub(crate) struct Gpu {
    pub(super) stream: Arc<CudaStream>,
    pub(super) name: String,
    pub(super) f64: Kernels,
    pub(super) f32: Kernels,
    pub(super) util: F64Kernels,
}

pub(super) fn no_device(reason: impl Into<String>) -> Error {
    Error::NoDevice {
        reason: reason.into(),
    }
}

pub(super) fn open(ordinal: usize) -> Result<Gpu> {
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
pub(super) fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
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

pub(super) fn grid(elements: usize) -> Result<LaunchConfig> {
    let blocks = elements.div_ceil(BLOCK as usize).max(1);
    Ok(LaunchConfig {
        grid_dim: (index32(blocks, "thread blocks")? as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// A symmetric matrix in full CSR on the device (f64).
pub(super) struct DeviceCsr {
    pub(super) ptr: CudaSlice<i32>,
    pub(super) idx: CudaSlice<i32>,
    pub(super) val: CudaSlice<f64>,
}

impl DeviceCsr {
    /// Uploads A (full CSR, both triangles of symmetric storage; the iterative solvers' `Csr`).
    pub(super) fn upload(g: &Gpu, csr: &Csr) -> Result<Self> {
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
    pub(super) fn residual(
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
    pub(super) fn mul(
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
pub(super) fn col_dots(
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

pub(super) fn upload_matrix(g: &Gpu, m: &DMatrix<f64>) -> Result<CudaSlice<f64>> {
    g.stream.clone_htod(m.as_slice()).map_err(driver("upload"))
}

pub(super) fn download_into(g: &Gpu, d: &CudaSlice<f64>, m: &mut DMatrix<f64>) -> Result<()> {
    g.stream
        .memcpy_dtoh(d, m.as_mut_slice())
        .map_err(driver("download"))
}
