//! The GPU backend (cudarc, CUDA loaded at run time). All `unsafe` code of the crate is in this
//! module, in kernel launches; everything else goes through cudarc's safe API. `kernels.rs`: the
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

mod cg;
mod device;
mod direct;
mod kernels;

pub(crate) use cg::factor_iterative;
pub(crate) use device::device_info;
pub(crate) use direct::factor_direct;
