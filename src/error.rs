//! The crate's single error type.
//!
//! Every message says *what* went wrong and *where* (which entry, which column, which shapes), so a
//! user debugging an inverse-design model can act on it without a debugger. "Math failed" variants
//! (not positive definite, singular, not converged) are kept apart from "input was malformed"
//! variants (shape, index, pattern, non-finite value).

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in sparsegrad.
///
/// Bad input never panics and never yields silently wrong numbers: it is reported through one of
/// these variants.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two operands (or an operand and what an operation expects) have incompatible shapes.
    #[error("shape mismatch in {op}: {left:?} vs {right:?} (rows, columns)")]
    ShapeMismatch {
        /// The operation that failed.
        op: &'static str,
        /// Shape of the first operand (rows, columns).
        left: (usize, usize),
        /// Shape of the second operand, or the expected shape.
        right: (usize, usize),
    },

    /// An index (row, column, parameter or gather index) is outside its valid range.
    #[error("index out of range in {context}: entry {entry} has {what} {index}, but it must be < {bound}")]
    IndexOutOfRange {
        /// Where the index appeared (e.g. "Assembly entry").
        context: &'static str,
        /// Position of the offending item in the input sequence.
        entry: usize,
        /// Which kind of index ("row", "column", "parameter", "index").
        what: &'static str,
        /// The offending index.
        index: usize,
        /// The exclusive upper bound.
        bound: usize,
    },

    /// A sparsity pattern is malformed: `rule` says which rule it breaks (so a caller can match
    /// it), `reason` says where.
    #[error("invalid sparsity pattern: {reason}")]
    InvalidPattern {
        /// The rule the pattern breaks.
        rule: PatternRule,
        /// What is wrong and where.
        reason: String,
    },

    /// A NaN or infinity was found in an input.
    #[error("non-finite value {value} in {context} at (row {row}, column {col})")]
    NonFinite {
        /// Which input held the value (e.g. "matrix values", "right-hand side").
        context: &'static str,
        /// Row of the value (for a sparse matrix: the row of the stored entry).
        row: usize,
        /// Column of the value.
        col: usize,
        /// The value itself.
        value: f64,
    },

    /// A matrix declared symmetric (full storage) has an entry that differs from its mirror.
    #[error("matrix declared symmetric is not: entry ({row}, {col}) is {value:e} but ({col}, {row}) is {mirror:e}")]
    NotSymmetric {
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// Value at (row, col).
        value: f64,
        /// Value at (col, row).
        mirror: f64,
    },

    /// Cholesky factorization met a non-positive pivot.
    #[error("matrix is not positive definite: {}", describe_pivot(*column, *pivot))]
    NotPositiveDefinite {
        /// The column (in the user's numbering) where the factorization broke down.
        column: usize,
        /// The pivot value, when known (it is known when a diagonal entry itself is not positive).
        pivot: Option<f64>,
    },

    /// The matrix is (numerically) singular.
    #[error("matrix is singular: {reason}")]
    Singular {
        /// The column where singularity was detected, when known.
        column: Option<usize>,
        /// What was detected.
        reason: String,
    },

    /// A refactorization or a solve was given values/patterns that don't match the analysed structure.
    #[error("structure mismatch: {reason}")]
    StructureMismatch {
        /// What differs.
        reason: String,
    },

    /// An iterative solver did not reach its tolerance.
    #[error("iterative solver did not converge after {iterations} iterations: relative residual {relative_residual:e}")]
    NotConverged {
        /// Iterations performed.
        iterations: usize,
        /// ‖b − A x‖ / ‖b‖ reached.
        relative_residual: f64,
    },

    /// `backward` was called on a value that is not a 1×1 scalar.
    #[error("backward needs a scalar (1×1) loss, got a {rows}×{cols} value")]
    NotScalar {
        /// Rows of the value.
        rows: usize,
        /// Columns of the value.
        cols: usize,
    },

    /// A file could not be read or written.
    #[error("{file}: {reason}")]
    Io {
        /// The file.
        file: String,
        /// The operating system's message.
        reason: String,
    },

    /// A file's contents are malformed.
    #[error("{file}:{line}: {reason}")]
    Format {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// No usable GPU: the crate was built without the `cuda` feature, the CUDA driver or NVRTC
    /// library could not be loaded, or the device could not be opened.
    #[error("no GPU: {reason}")]
    NoDevice {
        /// Why (the driver's own message where there is one).
        reason: String,
    },

    /// A [`Var`](crate::Var) was passed to an operation of another tape (or to the gradients of
    /// another tape). Every tape has a unique id, so this is caught even when a new tape reuses a
    /// dropped tape's memory.
    #[error("{var} belongs to another tape than this operation's ({op})")]
    ForeignVar {
        /// The operation that was given the variable.
        op: &'static str,
        /// The variable (`Var#index`).
        var: String,
        /// The id of the tape the variable belongs to.
        var_tape: u64,
        /// The id of the tape of the operation.
        tape: u64,
    },

    /// A size or allocation requested from user-given dimensions overflows or cannot be met.
    #[error("cannot allocate {what}: {reason}")]
    OutOfMemory {
        /// What was to be allocated (e.g. "a 3×4 matrix").
        what: String,
        /// Why not (arithmetic overflow, or the allocator's refusal with the size).
        reason: String,
    },

    /// A tape operation produced a NaN or ±∞ that reached the loss or a gradient:
    /// [`Tape::backward`](crate::Tape::backward) names the first operation (in the pass where it
    /// happened) whose output became non-finite.
    #[error("non-finite {pass} value {value} first produced by {op} (node #{node}) at (row {row}, column {col})")]
    NonFiniteOperation {
        /// "forward" (the node's value), "gradient" (the gradient flowing out of the node) or
        /// "tangent" (its forward-mode tangent, [`Tape::jvp`](crate::Tape::jvp)).
        pass: &'static str,
        /// The operation that produced it.
        op: &'static str,
        /// The node's index on its tape.
        node: usize,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column of the first non-finite entry.
        col: usize,
        /// The value.
        value: f64,
    },

    /// The factorization succeeded but the matrix is too ill-conditioned for the limit set with
    /// [`Solver::with_condition_limit`](crate::Solver::with_condition_limit): about
    /// log₁₀(estimate) of the 16 digits of the solution and gradient would be lost.
    #[error("matrix is ill-conditioned: estimated condition number κ₁ ≈ {estimate:e} (reciprocal {:e}) exceeds the limit {limit:e}; about {:.0} of 16 digits are lost", 1.0 / estimate, estimate.log10().clamp(0.0, 16.0))]
    IllConditioned {
        /// Estimated κ₁(A) (Hager–Higham; a lower bound usually within a factor of 3).
        estimate: f64,
        /// The limit that was exceeded.
        limit: f64,
    },

    /// LDLᵀ without pivoting met a pivot so small relative to the matrix that the factor grew
    /// unboundedly: the matrix may well be nonsingular and well conditioned, but this method
    /// cannot factor it stably.
    #[error("LDLᵀ without pivoting is unstable on this matrix: tiny pivot {pivot:e} at column {column} (factor growth {growth:e} × max|a_ij|); use Solver::lu(), which pivots")]
    UnstablePivot {
        /// The column (user's numbering) of the tiny pivot.
        column: usize,
        /// The pivot.
        pivot: f64,
        /// max|d_j| / max|a_ij|.
        growth: f64,
    },

    /// A Krylov iteration broke down (a division by a quantity that vanished) and restarting did
    /// not help, or it detected that A is singular or not positive definite.
    #[error("{method} broke down at iteration {iteration}: {reason}")]
    Breakdown {
        /// The Krylov method.
        method: &'static str,
        /// The iteration where it happened.
        iteration: usize,
        /// What vanished or stagnated, and what it means.
        reason: String,
    },

    /// The optimizer (argmin) failed for a reason of its own, e.g. a line search that found no
    /// acceptable step. (An error of the objective is returned as itself, not wrapped.)
    #[error("optimization failed: {reason}")]
    Optimizer {
        /// argmin's message.
        reason: String,
    },

    /// An argument is outside its domain (a size too small for a mesh, a learning rate's β ≥ 1,
    /// invalid optimizer settings, …).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The GPU driver failed an operation on an opened device (allocation, transfer, launch).
    #[error("GPU: {reason}")]
    Device {
        /// The operation and the driver's message.
        reason: String,
    },

    /// A preconditioner could not be built from this matrix (a zero or missing diagonal entry, a
    /// non-positive pivot in IC(0), …).
    #[error("{preconditioner} preconditioner breaks down at row {row}: {reason}")]
    Preconditioner {
        /// Which preconditioner.
        preconditioner: &'static str,
        /// The row where it broke down.
        row: usize,
        /// What happened, and what to use instead.
        reason: String,
    },

    /// The distributed engine (MUMPS, feature `mpi`) reported an error code other than
    /// singularity or memory (those are [`Error::Singular`] and [`Error::OutOfMemory`]).
    #[error("distributed solver failed: {reason} (INFOG(1) = {code}, INFOG(2) = {detail})")]
    Distributed {
        /// MUMPS's INFOG(1).
        code: i32,
        /// MUMPS's INFOG(2) (the code's argument: a column, a size, …).
        detail: i32,
        /// The phase and the code's meaning.
        reason: String,
    },

    /// A library behind a backend (faer, METIS, MUMPS) failed in a way that is none of the
    /// numerical failures above (not positive definite, singular, memory): an internal error, with
    /// the library's own report.
    #[error("{backend} failed: {reason}")]
    FactorizationFailed {
        /// The library and step ("faer symbolic Cholesky", "METIS NodeND", …).
        backend: String,
        /// What it reported.
        reason: String,
    },

    /// A size or index beyond what a backend's index type holds (METIS and the GPU kernels index
    /// with 32-bit integers): the problem is too large for that backend, not malformed.
    #[error("{what} = {value} exceeds the largest index {limit} of {backend}{hint}")]
    IndexOverflow {
        /// The backend.
        backend: &'static str,
        /// What overflowed.
        what: String,
        /// Its value.
        value: u64,
        /// The largest value the backend can index.
        limit: u64,
        /// What to do instead, if anything ("; use Ordering::Amd"), or "".
        hint: &'static str,
    },

    /// A nonlinear equilibrium (Newton's method) failed: not converged, no descent, a
    /// non-finite residual or a Jacobian that cannot be factored.
    #[error("equilibrium: {reason} (Newton iteration {iteration}, ‖r‖ = {residual:e})")]
    Equilibrium {
        /// The Newton iteration it failed at (0 = the initial guess).
        iteration: usize,
        /// ‖r‖₂ at that iterate.
        residual: f64,
        /// What went wrong.
        reason: String,
    },

    /// Mixed precision ([`Precision::Mixed`](crate::Precision::Mixed)) cannot reach f64
    /// accuracy on this matrix: its f32 factorization broke down, or its refined solves stalled
    /// (typically κ(A) ≳ 1e7–1e9).
    #[error("mixed precision cannot reach double-precision accuracy: {reason}; factor in f64 (Precision::F64), or use Precision::Auto, which falls back to f64")]
    PrecisionLoss {
        /// What failed: the f32 factorization's error, or the refinement's last backward error.
        reason: String,
    },

    /// An operation got a combination of arguments it does not support.
    #[error("unsupported: {reason}")]
    Unsupported {
        /// What was asked and why it is not possible.
        reason: String,
    },
}

/// The rules a CSC sparsity pattern must follow ([`Error::InvalidPattern`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatternRule {
    /// A dimension above `isize::MAX`.
    TooLarge,
    /// `col_ptr` must have `ncols + 1` entries.
    ColPtrLength,
    /// `col_ptr[0]` must be 0.
    ColPtrStart,
    /// `col_ptr[ncols]` must equal the number of row indices.
    ColPtrEnd,
    /// `col_ptr` must not decrease.
    ColPtrDecreasing,
    /// Symmetric storage needs a square pattern.
    NotSquare,
    /// Row indices within a column must increase.
    UnsortedRows,
    /// A row index appears twice in a column.
    DuplicateRows,
    /// One-triangle ([`Symmetry::Lower`](crate::Symmetry::Lower)) storage holds an entry above
    /// the diagonal.
    AboveDiagonal,
    /// A pattern declared [`Symmetry::Full`](crate::Symmetry::Full) stores (i, j) but not (j, i).
    NotSymmetric,
}

fn describe_pivot(column: usize, pivot: Option<f64>) -> String {
    match pivot {
        Some(p) => format!("pivot at column {column} is {p:e}"),
        None => format!("the Cholesky factorization broke down at column {column} (pivot ≤ 0)"),
    }
}

/// Index of the first NaN or ±∞ in `data`. Scans blocks without early exit (so the scan
/// vectorizes) and searches only the first block that holds a non-finite value.
pub(crate) fn first_non_finite(data: &[f64]) -> Option<usize> {
    const BLOCK: usize = 512;
    data.chunks(BLOCK).enumerate().find_map(|(b, chunk)| {
        let bad = chunk.iter().fold(false, |acc, v| acc | !v.is_finite());
        bad.then(|| b * BLOCK + chunk.iter().position(|v| !v.is_finite()).unwrap_or(0))
    })
}

/// Returns `Err(NonFinite)` for the first non-finite entry of a column-major `rows`-row buffer.
pub(crate) fn check_finite(context: &'static str, data: &[f64], rows: usize) -> Result<()> {
    match first_non_finite(data) {
        None => Ok(()),
        Some(k) => Err(Error::NonFinite {
            context,
            row: k % rows.max(1),
            col: k / rows.max(1),
            value: data[k],
        }),
    }
}

/// A zero-filled `rows`×`cols` matrix from user-given sizes: an overflowing or unallocatable
/// size is [`Error::OutOfMemory`] instead of an abort.
pub(crate) fn try_zeros(rows: usize, cols: usize) -> Result<nalgebra::DMatrix<f64>> {
    let what = || format!("a {rows}×{cols} matrix");
    let len = rows
        .checked_mul(cols)
        .filter(|&l| l <= isize::MAX as usize / std::mem::size_of::<f64>())
        .ok_or_else(|| Error::OutOfMemory {
            what: what(),
            reason: "the number of entries overflows".into(),
        })?;
    let mut data = Vec::new();
    data.try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory {
            what: what(),
            reason: format!(
                "{:.1} GiB could not be allocated",
                len as f64 * 8.0 / 1073741824.0
            ),
        })?;
    data.resize(len, 0.0);
    Ok(nalgebra::DMatrix::from_vec(rows, cols, data))
}

/// Checks that `count` items of `T` (a size taken from user input) can be allocated, so that the
/// allocation that follows cannot abort: [`Error::OutOfMemory`] otherwise. The probe reserves
/// (without touching) and frees the memory.
pub(crate) fn probe_alloc<T>(count: usize, what: impl FnOnce() -> String) -> Result<()> {
    let mut probe: Vec<T> = Vec::new();
    probe
        .try_reserve_exact(count)
        .map_err(|_| Error::OutOfMemory {
            what: what(),
            reason: format!(
                "{count} items of {} bytes cannot be allocated",
                std::mem::size_of::<T>()
            ),
        })
}

/// nalgebra-sparse's format errors (e.g. from `CscMatrix::try_from_csc_data`) convert with `?`.
impl From<nalgebra_sparse::SparseFormatError> for Error {
    fn from(e: nalgebra_sparse::SparseFormatError) -> Self {
        use nalgebra_sparse::SparseFormatErrorKind as Kind;
        let rule = match e.kind() {
            Kind::DuplicateEntry => PatternRule::DuplicateRows,
            Kind::IndexOutOfBounds => PatternRule::ColPtrEnd,
            _ => PatternRule::UnsortedRows,
        };
        Error::InvalidPattern {
            rule,
            reason: format!("nalgebra-sparse: {e}"),
        }
    }
}
