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
//! With the `mpi` feature, `mumps::Mumps` factorizes with MUMPS over MPI (distributed factor,
//! same [`Factorizer`](crate::Factorizer) contract).
//!
//! All `unsafe` code of the crate is in `backend/`: the GPU (`cuda/`), MUMPS (`mumps/`) and one
//! METIS call (`cpu/ordering.rs`); `cuda/plan.rs`, built with or without the feature, holds the
//! GPU's host-side logic (factor extraction, level schedules, CSR layouts), tested on the CPU.

pub(crate) mod cpu;
mod dispatch;
#[cfg(feature = "mpi")]
#[allow(unsafe_code)]
pub mod mumps;

pub(crate) mod cuda;

pub use crate::solve::{AnalysisReport, Prediction};
pub use crate::solve::{Device, Precision};
pub use dispatch::MIXED_AUTO_FLOPS;

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
