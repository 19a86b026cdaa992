//! The mass-spring cantilever: a 2D lattice of nx × ny nodes (unit spacing) joined by springs to
//! horizontal, vertical and both diagonal neighbours, clamped on the left column, loaded downward
//! at the middle node of the right column.
//!
//! Linear small-displacement model: K(k) = Σ_e k_e K̂_e with the axial element stiffness
//! K̂_e = [d dᵀ, −d dᵀ; −d dᵀ, d dᵀ] / ℓ_e (d the unit direction, ℓ_e the length), linear in the
//! spring stiffnesses k, so K is an [`Assembly`]; the clamped unknowns are eliminated with
//! [`Dirichlet`]. The design variables φ (one per spring) give k = k_min + s ⊙ c with
//! s = softmax(φ) and c_e = (V − k_min Σℓ)/ℓ_e, so the material Σ k_e ℓ_e always equals V, the
//! material of the uniform design k = 1 (reached at φ_e = ln ℓ_e).

use std::sync::Arc;

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::optim::Objective;
use crate::solve::Solver;
use crate::sparse::{Assembly, Dirichlet, Symmetry};
use crate::tape::{Tape, Var};

/// The lattice, its stiffness assembly, supports and load.
#[derive(Debug, Clone)]
pub struct Cantilever {
    /// Nodes per row.
    pub nx: usize,
    /// Rows.
    pub ny: usize,
    /// Node coordinates (x, y); node id = row · nx + column.
    pub nodes: Vec<[f64; 2]>,
    /// Springs as node pairs.
    pub springs: Vec<(usize, usize)>,
    /// Spring lengths ℓ_e.
    pub lengths: Vec<f64>,
    /// The node carrying the load.
    pub load_node: usize,
    /// Lower bound on every stiffness.
    pub k_min: f64,
    assembly: Assembly,
    dirichlet: Dirichlet,
    force: DMatrix<f64>,
    share_scale: DMatrix<f64>,
}

impl Cantilever {
    /// Builds the lattice model with `nx × ny` nodes and stiffness floor `k_min` (relative to the
    /// uniform design's k = 1).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for nx < 2 or ny < 2 or k_min outside [0, 1);
    /// [`Error::OutOfMemory`] for more than 2³² nodes.
    pub fn new(nx: usize, ny: usize, k_min: f64) -> Result<Self> {
        if nx < 2 || ny < 2 || !(0.0..1.0).contains(&k_min) {
            return Err(Error::InvalidArgument {
                what: "cantilever size",
                reason: format!("a cantilever needs nx, ny ≥ 2 and 0 ≤ k_min < 1, got {nx} × {ny}, k_min = {k_min}"),
            });
        }
        if nx.checked_mul(ny).is_none_or(|n| n > 1 << 32) {
            return Err(Error::OutOfMemory {
                what: format!("a {nx} × {ny} lattice"),
                reason: "more than 2³² nodes".into(),
            });
        }
        let id = |i: usize, j: usize| j * nx + i;
        let nodes: Vec<[f64; 2]> = (0..nx * ny)
            .map(|v| [(v % nx) as f64, (v / nx) as f64])
            .collect();
        let mut springs = Vec::new();
        for j in 0..ny {
            for i in 0..nx {
                if i + 1 < nx {
                    springs.push((id(i, j), id(i + 1, j)));
                }
                if j + 1 < ny {
                    springs.push((id(i, j), id(i, j + 1)));
                }
                if i + 1 < nx && j + 1 < ny {
                    springs.push((id(i, j), id(i + 1, j + 1)));
                    springs.push((id(i + 1, j), id(i, j + 1)));
                }
            }
        }
        let n_dof = 2 * nodes.len();
        let mut lengths = Vec::with_capacity(springs.len());
        let mut b = Assembly::builder(n_dof, n_dof, springs.len()).symmetry(Symmetry::Lower);
        for (e, &(a, c)) in springs.iter().enumerate() {
            let (dx, dy) = (nodes[c][0] - nodes[a][0], nodes[c][1] - nodes[a][1]);
            let len = dx.hypot(dy);
            lengths.push(len);
            let d = [dx / len, dy / len];
            let dofs = [2 * a, 2 * a + 1, 2 * c, 2 * c + 1];
            for (p, &dp) in dofs.iter().enumerate() {
                for (q, &dq) in dofs.iter().enumerate() {
                    // Element matrix entry: ±d_p d_q / ℓ, negative between the two nodes.
                    let sign = if (p < 2) == (q < 2) { 1.0 } else { -1.0 };
                    let coeff = sign * d[p % 2] * d[q % 2] / len;
                    if dp >= dq && coeff != 0.0 {
                        b.push_entry(dp, dq, e, coeff);
                    }
                }
            }
        }
        let assembly = b.build()?;
        let clamped: Vec<usize> = (0..ny)
            .flat_map(|j| [2 * id(0, j), 2 * id(0, j) + 1])
            .collect();
        let dirichlet = Dirichlet::new(&assembly, &clamped)?;
        let load_node = id(nx - 1, ny / 2);
        let mut force = DMatrix::zeros(n_dof, 1);
        force[2 * load_node + 1] = -1.0;
        let total: f64 = lengths.iter().sum();
        let share_scale = DMatrix::from_iterator(
            lengths.len(),
            1,
            lengths.iter().map(|l| (1.0 - k_min) * total / l),
        );
        Ok(Cantilever {
            nx,
            ny,
            nodes,
            springs,
            lengths,
            load_node,
            k_min,
            assembly,
            dirichlet,
            force,
            share_scale,
        })
    }

    /// The stiffness assembly K(k) (all unknowns, lower triangle).
    pub fn assembly(&self) -> &Assembly {
        &self.assembly
    }

    /// The design φ that gives the uniform design k = 1: φ_e = ln ℓ_e.
    pub fn uniform_design(&self) -> Vec<f64> {
        self.lengths.iter().map(|l| l.ln()).collect()
    }

    /// Total material Σ k_e ℓ_e of a stiffness vector.
    pub fn material(&self, k: &[f64]) -> f64 {
        k.iter().zip(&self.lengths).map(|(k, l)| k * l).sum()
    }

    /// k(φ) = k_min + softmax(φ) ⊙ c on the tape.
    pub fn stiffness<'t>(&self, phi: Var<'t>) -> Var<'t> {
        let tape = phi.tape();
        // softmax is invariant to a constant shift; shifting by max φ keeps exp() in range.
        let shift = phi.with_value(|v| v.max()).unwrap_or(0.0);
        let e = (phi - shift).exp();
        let s = e / e.sum();
        s * tape.constant(self.share_scale.clone()) + self.k_min
    }

    /// The full displacement vector u (2·nodes × 1) for stiffnesses `k`, clamped dofs zero.
    ///
    /// # Errors
    /// Errors of the solve (e.g. a non-positive-definite K when some k ≤ 0).
    pub fn displacement<'t>(&self, k: Var<'t>) -> Result<Var<'t>> {
        let tape = k.tape();
        let f = tape.constant(self.force.clone());
        let g = tape.constant(DMatrix::zeros(self.dirichlet.fixed().len(), 1));
        self.dirichlet.solve(k, f, g, &Solver::cholesky())
    }

    /// Compliance fᵀu for stiffnesses `k`.
    ///
    /// # Errors
    /// As [`Cantilever::displacement`].
    pub fn compliance<'t>(&self, k: Var<'t>) -> Result<Var<'t>> {
        let u = self.displacement(k)?;
        Ok(u.dot(k.tape().constant(self.force.clone())))
    }

    /// Node ids of the bottom row, left to right.
    pub fn bottom_row(&self) -> Vec<usize> {
        (0..self.nx).collect()
    }

    /// Evaluates the compliance of a stiffness vector (no gradient).
    ///
    /// # Errors
    /// As [`Cantilever::displacement`].
    pub fn compliance_of(&self, k: &[f64]) -> Result<f64> {
        let tape = Tape::new();
        self.compliance(tape.constant(DMatrix::from_column_slice(k.len(), 1, k)))?
            .scalar()
    }
}

/// Minimize compliance fᵀu over the design φ.
#[derive(Debug, Clone)]
pub struct Compliance(pub Arc<Cantilever>);

impl Objective for Compliance {
    fn loss<'t>(&self, _tape: &'t Tape, phi: Var<'t>) -> Result<Var<'t>> {
        self.0.compliance(self.0.stiffness(phi))
    }
}

/// Make the bottom row's vertical displacements match `target` (one value per bottom node),
/// least squares: ½ Σ (u_y − t)².
#[derive(Debug, Clone)]
pub struct Shape {
    /// The model.
    pub model: Arc<Cantilever>,
    /// Target vertical displacement of each bottom-row node.
    pub target: Vec<f64>,
}

impl Objective for Shape {
    fn loss<'t>(&self, tape: &'t Tape, phi: Var<'t>) -> Result<Var<'t>> {
        let m = &self.model;
        if self.target.len() != m.nx {
            return Err(Error::ShapeMismatch {
                op: "shape target",
                left: (self.target.len(), 1),
                right: (m.nx, 1),
            });
        }
        let u = m.displacement(m.stiffness(phi))?;
        let uy: Vec<usize> = m.bottom_row().iter().map(|&v| 2 * v + 1).collect();
        let t = tape.constant(DMatrix::from_column_slice(m.nx, 1, &self.target));
        Ok((u.gather(&uy) - t).square().sum() * 0.5)
    }
}
