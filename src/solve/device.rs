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

/// Arithmetic of GPU solves. The tape's values and gradients are always f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
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
