//! What a symbolic analysis reports: part of the contract between the configuration
//! ([`Solver::analysis_report`](crate::Solver::analysis_report)) and the backends that fill it.

use super::Ordering;

/// The size of a factor an ordering predicts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prediction {
    /// Entries of L (one triangle, diagonal included).
    pub nnz_l: f64,
    /// Floating-point operations of the numeric factorization (Σ_j c_j², c_j = column counts).
    pub flops: f64,
}

/// What [`Solver::analysis_report`](crate::Solver::analysis_report) found: the ordering used
/// and the predictions it was chosen from.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisReport {
    /// The ordering the factorizations use (`Auto` resolved to `Amd` or `NestedDissection`).
    pub ordering: Ordering,
    /// Its predicted factor.
    pub prediction: Prediction,
    /// For `Auto`: the AMD prediction and, when it was 3D-like, the nested-dissection one.
    pub candidates: Vec<(Ordering, Prediction)>,
    /// The precision the factorizations run in: the solver's, with
    /// [`Precision::Auto`](crate::Precision::Auto) resolved by the predicted flops.
    pub precision: crate::Precision,
}
