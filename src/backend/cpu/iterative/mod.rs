//! The CPU Krylov solvers behind [`Iterative`]: the "factorization" keeps A in CSR and the
//! preconditioner; solves iterate each column (columns in parallel with rayon, each column's
//! arithmetic sequential, so results do not depend on the thread count) and record their
//! [`Convergence`] for [`Factorization::solve_info`].

pub(crate) mod krylov;
pub(crate) mod precond;

use std::sync::{Arc, Mutex};

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::error::Result;
use crate::solve::{Convergence, Direction, Factor, Factorization, Iterative, Krylov, SolveInfo};
use crate::sparse::Structure;
use krylov::System;
use precond::{Csr, Precond};

/// The stored operator of an iterative "factorization".
struct Operator {
    settings: Iterative,
    a: Csr,
    m: Precond,
    info: Mutex<SolveInfo>,
}

/// The CPU Krylov "factorization" of a checked system (see `Factorizer for Iterative` in
/// `backend/dispatch.rs`, which validates the settings and the storage first): A in CSR and the
/// preconditioner.
pub(crate) fn factor(
    structure: &Structure,
    values: &[f64],
    settings: &Iterative,
) -> Result<Arc<Factor>> {
    let a = Csr::new(structure, values);
    let m = Precond::new(
        settings.preconditioner,
        &a,
        settings.method == Krylov::Minres,
    )?;
    Ok(Arc::new(Operator {
        settings: settings.clone(),
        a,
        m,
        info: Mutex::default(),
    }))
}

impl Operator {
    fn solve_all(&self, rhs: &mut DMatrix<f64>, direction: Direction) -> Result<()> {
        let adjoint = direction == Direction::Transpose;
        let s = &self.settings;
        let (n, k) = rhs.shape();
        let system = System {
            a: &self.a,
            m: &self.m,
            // Symmetric methods see A = Aᵀ; the general ones solve with Aᵀ and Mᵀ.
            transpose: adjoint && !s.method.symmetric_only(),
            rtol: s.relative_tolerance,
            atol: s.absolute_tolerance,
            max_iterations: s.max_iterations,
        };
        let b = rhs.clone();
        // Initial guesses: the previous solution of the same kind and shape, or zero.
        let guess = s.warm.as_ref().and_then(|w| {
            let w = w.lock().unwrap_or_else(|p| p.into_inner());
            let previous = if adjoint { &w.adjoint } else { &w.forward };
            previous.as_ref().filter(|x| x.shape() == (n, k)).cloned()
        });
        match guess {
            Some(x0) => rhs.copy_from(&x0),
            None => rhs.fill(0.0),
        }
        let results: Vec<Result<Convergence>> = rhs
            .as_mut_slice()
            .par_chunks_mut(n.max(1))
            .zip(b.as_slice().par_chunks(n.max(1)))
            .map(|(x, b)| system.solve(s.method, b, x))
            .collect();
        let mut total = Convergence::default();
        for r in results {
            let c = r?;
            total.iterations = total.iterations.max(c.iterations);
            total.relative_residual = total.relative_residual.max(c.relative_residual);
        }
        {
            let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
            if adjoint {
                info.adjoint = Some(total);
            } else {
                info.forward = Some(total);
            }
        }
        if let Some(w) = &s.warm {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            let slot = if adjoint {
                &mut w.adjoint
            } else {
                &mut w.forward
            };
            *slot = Some(rhs.clone());
        }
        Ok(())
    }
}

impl Factorization for Operator {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, Direction::Forward)
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.solve_all(rhs, Direction::Transpose)
    }
    fn dim(&self) -> usize {
        self.a.n
    }
    fn describe(&self) -> String {
        format!(
            "{:?} + {:?}, relative tolerance {:e}",
            self.settings.method, self.settings.preconditioner, self.settings.relative_tolerance
        )
    }
    fn solve_info(&self) -> SolveInfo {
        *self.info.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn is_iterative(&self) -> bool {
        true
    }
}
