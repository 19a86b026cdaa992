//! # sparsegrad
//!
//! Reverse-mode automatic differentiation where **sparse linear solve is a first-class node**.
//! Objectives that depend on the solution X of A(θ) X = B get their value and ∂loss/∂θ with one
//! numeric factorization: the solve node keeps its factorization and reuses it for the adjoint
//! solve, returns the gradient of A only at its stored entries (never an n×n matrix), supports
//! several right-hand sides, symmetric (Cholesky, LDLᵀ) and general (LU with a true transpose
//! solve) matrices, and refactors a fixed pattern without redoing the symbolic analysis.
//!
//! ```
//! use nalgebra::DMatrix;
//! use sparsegrad::{Assembly, Solver, Symmetry, Tape};
//!
//! # fn main() -> sparsegrad::Result<()> {
//! // A(w) = I + L(w): the weighted Laplacian of a 4-cycle plus the identity, lower triangle stored.
//! let n = 4;
//! let edges = [(1, 0), (2, 1), (3, 2), (3, 0)];
//! let mut b = Assembly::builder(n, n, edges.len()).symmetry(Symmetry::Lower);
//! for i in 0..n {
//!     b.push_constant(i, i, 1.0);
//! }
//! for (e, &(i, j)) in edges.iter().enumerate() {
//!     b.push_entry(i, i, e, 1.0);
//!     b.push_entry(j, j, e, 1.0);
//!     b.push_entry(i, j, e, -1.0); // i > j: the lower-triangle entry
//! }
//! let assembly = b.build()?;
//!
//! let tape = Tape::new();
//! let w = tape.var(DMatrix::from_element(edges.len(), 1, 1.0));
//! let a = tape.assemble(&assembly, w)?;
//! let rhs = tape.constant(DMatrix::from_column_slice(n, 1, &[1.0, 0.0, 0.0, 0.0]));
//! let x = tape.solve(a, rhs, &Solver::cholesky())?;
//! let loss = x.square().sum() * 0.5; // L = ½‖A(w)⁻¹ b‖²
//! let grads = tape.backward(loss)?;
//! let dl_dw = grads.wrt(w);
//! assert_eq!(dl_dw.shape(), (4, 1));
//!
//! // The same model, checked against central finite differences.
//! let b0 = DMatrix::from_column_slice(n, 1, &[1.0, 0.0, 0.0, 0.0]);
//! let report = sparsegrad::check::gradient(
//!     |tape, w| {
//!         let a = tape.assemble(&assembly, w)?;
//!         let x = tape.solve(a, tape.constant(b0.clone()), &Solver::cholesky())?;
//!         Ok(x.square().sum() * 0.5)
//!     },
//!     &DMatrix::from_element(4, 1, 1.0),
//!     &Default::default(),
//! )?;
//! assert!(report.max_relative_error < 1e-8);
//! assert!((&report.gradient - dl_dw).amax() == 0.0);
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//! - [`tape`]: [`Tape`], [`Var`], the differentiable operations and [`Tape::backward`].
//! - [`sparse`]: [`Structure`] (validated pattern + cached symbolic analyses), [`Assembly`]
//!   (parameters → values, linear), [`Dirichlet`] (prescribed unknowns).
//! - [`solve`]: [`Solver`] (method + backend), [`Factorization`].
//! - [`batch`]: value and gradient at many points in parallel (rayon), one shared analysis.
//! - [`check`]: finite-difference gradient checking.
//! - [`matrix_market`]: Matrix Market reading (with line numbers) and writing.
//! - [`problems`]: reproducible instances (graph Laplacians, the mass-spring cantilever).
//! - [`optim`]: the argmin bridge (objective → `CostFunction` + `Gradient`, progress observer).
//! - [`Error`]: every failure, with what and where.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod backend;
pub mod batch;
pub mod check;
mod error;
pub mod matrix_market;
pub mod optim;
mod pool;
pub mod problems;
pub mod solve;
pub mod sparse;
pub mod tape;

pub use backend::{Device, Precision, MIXED_AUTO_FLOPS};
pub use error::{Error, PatternRule, Result};

/// The README's example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// docs/COOKBOOK.md's recipes are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/COOKBOOK.md")]
struct CookbookDoctests;
pub use solve::{
    Adjoint, Convergence, Factor, Factorization, Factorizer, Implementation, Iterative, Krylov,
    LogDet, Method, Ordering, Preconditioner, SolveInfo, Solver,
};
pub use sparse::{Assembly, AssemblyBuilder, Dirichlet, Structure, Symmetry};
pub use tape::{Gradients, IntoValue, Tape, Var};

/// Frees the large buffers (≥ 1 MiB each; at most 16 of them and 1 GiB, plus at most 4 faer
/// workspaces and 1 GiB) that sparsegrad keeps for reuse between evaluations, and returns how
/// many bytes were released.
///
/// Tapes, gradients and factorizations hand their large vectors back to a small pool when they
/// are dropped, and the next evaluation takes them from there instead of asking the allocator for
/// fresh pages (for large systems that saves a page fault per 4 KiB on every evaluation). Call this
/// after an optimization to give that memory back to the system.
///
/// ```
/// let _ = sparsegrad::release_pooled_memory();
/// assert_eq!(sparsegrad::pooled_memory(), 0);
/// ```
pub fn release_pooled_memory() -> usize {
    pool::release()
}

/// Bytes currently kept for reuse (see [`release_pooled_memory`]).
pub fn pooled_memory() -> usize {
    pool::pooled_bytes()
}
