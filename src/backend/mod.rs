//! Where solves run: the CPU (default) or an NVIDIA GPU through cudarc (`cuda` feature).
//!
//! [`Device`] is chosen in the solver options ([`Solver::on`](crate::Solver::on),
//! [`Iterative::on`](crate::Iterative::on)). The GPU direct path keeps the symbolic analysis and
//! numeric Cholesky factorization on the CPU (faer), uploads the factor once per factorization and
//! runs the forward and adjoint triangular solves for all right-hand sides, and the gradient
//! scatter Ā_ij = −Σ_c Λ_ic X_jc, as GPU kernels. The GPU iterative path runs Jacobi-preconditioned
//! conjugate gradients on all columns at once. Without the `cuda` feature (or without a driver or
//! device at run time) every GPU request returns [`Error::NoDevice`](crate::Error::NoDevice).
//!
//! All `unsafe` code of the crate is in `backend/cuda.rs`; `backend/plan.rs` holds the host-side logic
//! (factor extraction, level schedules, CSR layouts) that is tested on the CPU.

pub(crate) mod plan;

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_standin.rs"]
mod cuda;

pub(crate) use cuda::{factor_direct, factor_iterative};

/// Where a solve runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU (faer / nalgebra-sparse), the default.
    #[default]
    Cpu,
    /// An NVIDIA GPU by CUDA device ordinal, with the arithmetic used on it.
    Cuda {
        /// CUDA device ordinal (0 for the first GPU).
        ordinal: usize,
        /// Arithmetic of the GPU solves.
        precision: Precision,
    },
}

impl Device {
    /// The first GPU in double precision.
    pub fn cuda() -> Self {
        Device::Cuda {
            ordinal: 0,
            precision: Precision::F64,
        }
    }
}

/// Arithmetic of GPU solves. The tape's values and gradients are always f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f64 factor and solves: agrees with the CPU backend to rounding.
    #[default]
    F64,
    /// f32 factor values and solves: half the memory traffic; relative error ≈ κ(A)·6e-8.
    F32,
    /// f32 factor and solves with f64 iterative refinement (residuals b − A x in f64 on the GPU)
    /// until the relative residual ‖b − A x‖/‖b‖ ≤ 1e-12 for every column, or
    /// [`Error::NotConverged`](crate::Error::NotConverged).
    Mixed,
}

/// Name and memory of a GPU, or [`Error::NoDevice`](crate::Error::NoDevice) with the reason.
///
/// ```
/// // Without the `cuda` feature or without a GPU this is an error, never a panic.
/// match sparsegrad::backend::device_info(0) {
///     Ok(info) => println!("GPU: {info}"),
///     Err(e) => println!("{e}"),
/// }
/// ```
///
/// # Errors
/// [`Error::NoDevice`](crate::Error::NoDevice).
pub fn device_info(ordinal: usize) -> crate::Result<String> {
    cuda::device_info(ordinal)
}
