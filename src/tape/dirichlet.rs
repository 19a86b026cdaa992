//! The tape operations of a [`Dirichlet`] elimination: the reduced right-hand side, the expansion
//! to all unknowns and the reduced solve.

use super::Var;
use crate::error::{Error, Result};
use crate::solve::Factorizer;
use crate::sparse::Dirichlet;

impl Dirichlet {
    /// The reduced right-hand side f_f − K_fc(p) g for a full-length load `f` (n×k) and prescribed
    /// values `g` (n_fixed×k, rows in [`Dirichlet::fixed`] order).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `f` or `g` when `f` is not n×k or `g` not n_fixed×k; the
    /// errors of the underlying tape operations (e.g. [`Error::ForeignVar`]).
    pub fn rhs<'t>(&self, p: Var<'t>, f: Var<'t>, g: Var<'t>) -> Result<Var<'t>> {
        self.check_shapes(f, g)?;
        let tape = p.tape();
        let f_free = f.gather(&self.free);
        if self.fixed.is_empty() {
            return Ok(f_free);
        }
        let k_fc = tape.assemble(&self.free_fixed, p)?;
        Ok(f_free - tape.spmul(k_fc, g)?)
    }

    fn check_shapes(&self, f: Var<'_>, g: Var<'_>) -> Result<()> {
        let (fs, gs) = (f.shape(), g.shape());
        if fs.0 != self.n {
            return Err(Error::ShapeMismatch {
                op: "Dirichlet: f (the full-length load, n×k) vs n",
                left: fs,
                right: (self.n, fs.1),
            });
        }
        if gs != (self.fixed.len(), fs.1) {
            return Err(Error::ShapeMismatch {
                op: "Dirichlet: g (prescribed values, n_fixed×k in Dirichlet::fixed order)",
                left: gs,
                right: (self.fixed.len(), fs.1),
            });
        }
        Ok(())
    }

    /// The full solution u (n×k) from the free part and the prescribed values.
    pub fn expand<'t>(&self, u_free: Var<'t>, g: Var<'t>) -> Var<'t> {
        let u = u_free.scatter_add(&self.free, self.n);
        if self.fixed.is_empty() {
            return u;
        }
        u + g.scatter_add(&self.fixed, self.n)
    }

    /// Solves K(p) u = f with u = 0 on the fixed unknowns (pinned supports) and returns the full
    /// u (n×k): the common case of [`Dirichlet::solve`] without building a zero `g`.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::{Assembly, Dirichlet, Solver, Symmetry, Tape};
    /// # fn main() -> sparsegrad::Result<()> {
    /// // Three springs in a row 0 – 1 – 2 – 3, node 0 pinned, unit pull on node 3.
    /// let ke = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 1.0]);
    /// let mut b = Assembly::builder(4, 4, 3).symmetry(Symmetry::Lower);
    /// for e in 0..3 {
    ///     b.push_element(&[e, e + 1], e, &ke);
    /// }
    /// let pinned = Dirichlet::new(&b.build()?, &[0])?;
    /// let tape = Tape::new();
    /// let k = tape.var(&[1.0, 2.0, 4.0][..]);
    /// let f = tape.constant(&[0.0, 0.0, 0.0, 1.0][..]);
    /// let u = pinned.solve_homogeneous(k, f, &Solver::cholesky())?;
    /// // u_3 = 1/1 + 1/2 + 1/4; compliance fᵀu and its gradient −(u_j − u_i)² per spring.
    /// let c = u.dot(f);
    /// assert!((c.scalar()? - 1.75).abs() < 1e-14);
    /// let g = tape.backward(c)?;
    /// assert!((g.wrt(k)[2] + 1.0 / 16.0).abs() < 1e-14);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `f` unless it is n×k; as [`crate::Tape::solve`].
    pub fn solve_homogeneous<'t>(
        &self,
        p: Var<'t>,
        f: Var<'t>,
        solver: &dyn Factorizer,
    ) -> Result<Var<'t>> {
        let g = zeros(p, self.fixed.len(), f.shape().1)?;
        self.solve(p, f, g, solver)
    }

    /// [`Dirichlet::solve`] without loads (f = 0): only the prescribed values g (fixed×k) drive
    /// the solution — a displacement-controlled test, a boundary temperature.
    ///
    /// ```
    /// use nalgebra::DMatrix;
    /// use sparsegrad::{Assembly, Dirichlet, Solver, Symmetry, Tape};
    /// # fn main() -> sparsegrad::Result<()> {
    /// // Two equal springs 0 – 1 – 2, the ends held at 0 and 1: the middle sits at ½.
    /// let ke = DMatrix::from_row_slice(2, 2, &[1.0, -1.0, -1.0, 1.0]);
    /// let mut b = Assembly::builder(3, 3, 2).symmetry(Symmetry::Lower);
    /// for e in 0..2 {
    ///     b.push_element(&[e, e + 1], e, &ke);
    /// }
    /// let ends = Dirichlet::new(&b.build()?, &[0, 2])?;
    /// let tape = Tape::new();
    /// let k = tape.var(&[1.0, 1.0][..]);
    /// let u = ends.solve_prescribed(k, tape.constant(&[0.0, 1.0][..]), &Solver::cholesky())?;
    /// assert!((u.value()?[1] - 0.5).abs() < 1e-15);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Dirichlet::solve`].
    pub fn solve_prescribed<'t>(
        &self,
        p: Var<'t>,
        g: Var<'t>,
        solver: &dyn Factorizer,
    ) -> Result<Var<'t>> {
        let f = zeros(p, self.n(), g.shape().1)?;
        self.solve(p, f, g, solver)
    }

    /// Solves K(p) u = f with u = g on the fixed unknowns and returns the full u (n×k):
    /// K_ff u_f = f_f − K_fc g, u_c = g.
    ///
    /// # Errors
    /// As [`crate::Tape::solve`] on the reduced system.
    pub fn solve<'t>(
        &self,
        p: Var<'t>,
        f: Var<'t>,
        g: Var<'t>,
        solver: &dyn Factorizer,
    ) -> Result<Var<'t>> {
        self.check_shapes(f, g)?;
        let tape = p.tape();
        let k_ff = tape.assemble(&self.free_free, p)?;
        let u_free = tape.solve(k_ff, self.rhs(p, f, g)?, solver)?;
        let u = self.expand(u_free, g);
        u.error().map_or(Ok(u), Err)
    }
}

/// A rows×cols zero constant on `p`'s tape (fallible allocation).
fn zeros(p: Var<'_>, rows: usize, cols: usize) -> Result<Var<'_>> {
    Ok(p.tape().constant(crate::error::try_zeros(rows, cols)?))
}
