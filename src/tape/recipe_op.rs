//! The "add a tape op" recipe of docs/ARCHITECTURE.md, followed once (test builds only): a new op
//! is this one file — its forward (a `Var` method that records it) next to its backward rule
//! (an [`Operation`]) — plus one `mod` line in `tape/mod.rs`. Nothing else lists operations.

use nalgebra::DMatrix;

use super::{Hvp, Jvp, Operation, Var, Vjp};
use crate::error::Result;

impl<'t> Var<'t> {
    /// x³ elementwise (test-only: the recipe's example).
    fn cube(self) -> Var<'t> {
        let x = self.index;
        self.tape.record(
            &[self],
            |nodes| Ok((nodes[x].value.map(|v| v * v * v), None)),
            Cube { x },
        )
    }
}

/// y = x³: x̄ = 3x² ȳ.
struct Cube {
    x: usize,
}

impl Operation for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }
    fn inputs(&self) -> Vec<usize> {
        vec![self.x]
    }
    fn backward(&self, vjp: &mut Vjp<'_, '_>, g: &DMatrix<f64>) -> Result<()> {
        let x = &vjp.nodes()[self.x].value;
        vjp.add(self.x, g.zip_map(x, |g, x| 3.0 * x * x * g))
    }
    fn forward(&self, jvp: &Jvp<'_>) -> Result<Option<DMatrix<f64>>> {
        let x = &jvp.nodes()[self.x].value;
        Ok(jvp
            .tangent(self.x)
            .map(|t| t.zip_map(x, |tv, xv| 3.0 * xv * xv * tv)))
    }
    /// x̄ = 3x²ḡ: its tangent adds 6xẋḡ.
    fn backward_tangent(
        &self,
        hvp: &mut Hvp<'_, '_>,
        g: &DMatrix<f64>,
        g_dot: Option<&DMatrix<f64>>,
    ) -> Result<()> {
        hvp.linear(self, g_dot)?;
        let x = &hvp.nodes()[self.x].value;
        if let Some(t) = hvp.tangent(self.x) {
            let c = DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| {
                6.0 * x[(i, j)] * t[(i, j)] * g[(i, j)]
            });
            hvp.add(self.x, c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{gradient, Options};

    /// The new op composes with the others, is named in errors, and its gradient matches
    /// finite differences.
    #[test]
    fn a_new_op_is_one_unit() {
        let x0 = DMatrix::from_column_slice(3, 1, &[0.5, -1.25, 2.0]);
        let check = gradient(
            |_, x| Ok(x.cube().scale(0.5).sum_squares()),
            x0.clone(),
            &Options::default(),
        )
        .unwrap();
        assert!(check.passed, "{check:?}");
        // d/dx Σ (x³/2)² = 3 x⁵ / 2.
        let expected = x0.map(|x| 1.5 * x.powi(5));
        assert!((&check.gradient - &expected).amax() < 1e-12 * expected.amax());
        let tape = crate::Tape::new();
        let y = tape.var(x0).cube();
        assert_eq!(tape.nodes()[y.index].op.name(), "cube");
    }
}
