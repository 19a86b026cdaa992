//! The GPU backend (cudarc, CUDA loaded at run time). Without the `cuda` feature only `plan.rs`
//! (the host-side plans, tested on the CPU) is built, and `standin.rs` answers every GPU request
//! with [`Error::NoDevice`](crate::Error::NoDevice). All `unsafe` code of the crate is in this
//! module's feature-gated files, in kernel launches; everything else goes through cudarc's safe API. `kernels.rs`: the
//! CUDA C sources; `device.rs`: opening a device, transfers, the device CSR; `direct.rs`: the
//! direct path; `cg.rs`: the iterative path.
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

pub(crate) mod plan;

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod cg;
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod device;
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod direct;
#[cfg(feature = "cuda")]
mod kernels;
#[cfg(not(feature = "cuda"))]
mod standin;

#[cfg(feature = "cuda")]
pub(crate) use cg::factor_iterative;
#[cfg(feature = "cuda")]
pub(crate) use device::device_info;
#[cfg(feature = "cuda")]
pub(crate) use direct::factor_direct;
#[cfg(not(feature = "cuda"))]
pub(crate) use standin::{device_info, factor_direct, factor_iterative};
