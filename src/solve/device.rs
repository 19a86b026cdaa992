//! Where a solve runs, as configured on [`Solver::on`](super::Solver::on) and
//! [`Iterative::on`](super::Iterative::on). The implementations are in the backend.

/// Where a solve runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
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

/// Arithmetic of a factorization: of CPU Cholesky / LDLᵀ factorizations
/// ([`Solver::with_precision`](super::Solver::with_precision)) and of GPU solves
/// ([`Device::Cuda`]). The tape's values and gradients are always f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// f64 factor and solves: agrees with the CPU backend to rounding.
    #[default]
    F64,
    /// Single precision: f32 factor values and solves — half the factor memory and memory
    /// traffic; relative error ≈ κ(A)·6e-8.
    F32,
    /// An f32 factor with every solve refined in f64 until the f64 factor's accuracy. On the
    /// CPU: iterative refinement, then GMRES-IR preconditioned by the f32 factor for columns that
    /// stall; [`Error::PrecisionLoss`](crate::Error::PrecisionLoss) when neither reaches it or the
    /// f32 factorization breaks down. On the GPU: refinement until ‖b − A x‖/‖b‖ ≤ 1e-12 for
    /// every column, or [`Error::NotConverged`](crate::Error::NotConverged).
    Mixed,
    /// On the CPU: [`Precision::Mixed`] for Cholesky factors large enough that it is faster
    /// (predicted factorization flops ≥
    /// [`MIXED_AUTO_FLOPS`](crate::MIXED_AUTO_FLOPS), reported by
    /// [`Solver::analysis_report`](super::Solver::analysis_report)), f64 otherwise; where Mixed
    /// cannot reach f64 accuracy the matrix is factored in f64 and
    /// [`Factorization::fallback_reason`](super::Factorization::fallback_reason) says why. f64 on
    /// the GPU.
    Auto,
}
