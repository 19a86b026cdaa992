//! Parallel batches: value and gradient of one model at many parameter points, in parallel with
//! rayon. Every point gets its own tape; structures are shared (`Arc`), so a batch over designs
//! with one sparsity pattern runs the symbolic analysis once and the numeric factorizations and
//! solves in parallel. Results are in input order and bit-identical whatever the thread count
//! (each point is computed sequentially, faer runs with `Par::Seq`).
//!
//! ```
//! use nalgebra::DMatrix;
//! use sparsegrad::batch;
//! let points: Vec<DMatrix<f64>> = (0..8).map(|i| DMatrix::from_element(3, 1, i as f64)).collect();
//! let results = batch::value_and_gradient(&points, |_tape, x| Ok(x.sum_squares()));
//! let (loss, grad) = results[2].as_ref().unwrap();
//! assert_eq!(*loss, 12.0);
//! assert_eq!(grad.as_slice(), &[4.0, 4.0, 4.0]);
//! ```

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::Result;
use crate::tape::{Tape, Var};

/// Loss and gradient of `f` at every point, computed in parallel; one result per point, in order.
pub fn value_and_gradient<F>(points: &[DMatrix<f64>], f: F) -> Vec<Result<(f64, DMatrix<f64>)>>
where
    F: for<'t> Fn(&'t Tape, Var<'t>) -> Result<Var<'t>> + Sync,
{
    points
        .par_iter()
        .map(|p| {
            let tape = Tape::new();
            let x = tape.var(p.clone());
            let loss = f(&tape, x)?;
            let value = loss.scalar()?;
            let grad = tape.backward(loss)?.wrt(x).clone();
            Ok((value, grad))
        })
        .collect()
}
