//! Geometrically nonlinear mass-spring networks: springs with rest lengths under large
//! displacement, in equilibrium where the internal forces balance the load,
//!
//! ```text
//!   r(u, k) = Σ_e k_e (1/L_e − 1/ℓ_e) B_eᵀ x_e − f = ∇ᵤE,   E = ½ Σ_e (k_e/L_e)(ℓ_e − L_e)² − fᵀu
//! ```
//!
//! with x_e = X_b − X_a + u_b − u_a the deformed spring vector, ℓ_e = |x_e| and L_e its rest
//! length (the lattice's spacing; k_e/L_e is the axial stiffness, as in the linear model) —
//! solved by [`Tape::equilibrium`] (Newton), differentiated by the implicit function theorem.
//! The tangent stiffness J = Σ_e k_e B_eᵀ [x_e x_eᵀ/ℓ_e³ + (1/L_e − 1/ℓ_e) I] B_e is given to
//! Newton as tape code
//! on a lower-triangle [`Structure`] of the free unknowns (or, with
//! [`SpringNetwork::residual`]`(false)`, computed by colored forward-mode products on
//! [`SpringNetwork::full_pattern`]).
//!
//! The lattices are those of [`Cantilever`] (2D) and [`Cantilever3d`] (3D): the same nodes,
//! springs, clamped left face and tip load (downward, scaled by `load`), and the same design
//! map k(φ) = k_min + softmax(φ) ⊙ c with the material Σ k_e ℓ_e fixed. At a small load the
//! response is the linear model's (compliance ∝ load²); at a large load the springs rotate and
//! stretch, and the stiffest design differs.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::cantilever::Cantilever;
use super::cantilever3d::Cantilever3d;
use crate::error::{Error, Result};
use crate::optim::Objective;
use crate::solve::Solver;
use crate::sparse::{Structure, Symmetry};
use crate::tape::{Newton, NewtonReport, Residual, Tape, Var};

/// One (component, component) block of the tangent stiffness: which springs add into which
/// stored entries, with which sign.
#[derive(Debug, Clone)]
struct Block {
    c1: usize,
    c2: usize,
    springs: Vec<usize>,
    signs: DMatrix<f64>,
    slots: Vec<usize>,
}

/// A spring lattice with rest lengths, clamped nodes and a load, as a nonlinear equilibrium.
#[derive(Debug)]
pub struct SpringNetwork {
    /// 2 or 3.
    pub dim: usize,
    /// Node coordinates, `dim` per node.
    pub coords: Vec<f64>,
    /// Springs as node pairs.
    pub springs: Vec<(usize, usize)>,
    /// Rest lengths L_e (the undeformed lengths).
    pub lengths: Vec<f64>,
    /// The unknowns' full-numbering dofs (node · dim + component), in order.
    pub free: Vec<usize>,
    /// The load on the free unknowns (n_free × 1).
    pub force: DMatrix<f64>,
    /// Lower bound on every stiffness (of the design map).
    pub k_min: f64,
    /// For each spring and component: the free index of each end's dof (None when clamped).
    ends: Vec<[Option<usize>; 6]>,
    jacobian: Arc<Structure>,
    blocks: Vec<Block>,
    full: Arc<Structure>,
    share_scale: DMatrix<f64>,
}

impl SpringNetwork {
    /// The 2D cantilever's lattice with its tip load scaled by `load`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a non-finite or zero load.
    pub fn cantilever(c: &Cantilever, load: f64) -> Result<Self> {
        let coords = c.nodes.iter().flat_map(|p| p.iter().copied()).collect();
        let clamped: Vec<bool> = (0..c.nodes.len()).map(|v| v % c.nx == 0).collect();
        Self::new(
            2,
            coords,
            c.springs.clone(),
            &clamped,
            2 * c.load_node + 1,
            load,
            c.k_min,
        )
    }

    /// The 3D cantilever's lattice with its tip load scaled by `load`.
    ///
    /// # Errors
    /// As [`SpringNetwork::cantilever`].
    pub fn cantilever3d(c: &Cantilever3d, load: f64) -> Result<Self> {
        let coords = c.nodes.iter().flat_map(|p| p.iter().copied()).collect();
        let clamped: Vec<bool> = (0..c.nodes.len()).map(|v| v % c.nx == 0).collect();
        Self::new(
            3,
            coords,
            c.springs.clone(),
            &clamped,
            3 * c.load_node + 2,
            load,
            c.k_min,
        )
    }

    fn new(
        dim: usize,
        coords: Vec<f64>,
        springs: Vec<(usize, usize)>,
        clamped: &[bool],
        load_dof: usize,
        load: f64,
        k_min: f64,
    ) -> Result<Self> {
        if !load.is_finite() || load == 0.0 {
            return Err(Error::InvalidArgument {
                what: "spring network load",
                reason: format!("the load must be finite and nonzero, got {load}"),
            });
        }
        let n_nodes = clamped.len();
        let mut free_of = vec![None; n_nodes * dim];
        let mut free = Vec::new();
        for v in 0..n_nodes {
            if !clamped[v] {
                for c in 0..dim {
                    free_of[v * dim + c] = Some(free.len());
                    free.push(v * dim + c);
                }
            }
        }
        let n = free.len();
        let mut force = DMatrix::zeros(n, 1);
        if let Some(i) = free_of[load_dof] {
            force[i] = -load;
        }
        let lengths: Vec<f64> = springs
            .iter()
            .map(|&(a, b)| {
                (0..dim)
                    .map(|c| (coords[b * dim + c] - coords[a * dim + c]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let mut ends = Vec::with_capacity(springs.len());
        for &(a, b) in &springs {
            let mut e = [None; 6];
            for c in 0..dim {
                e[c] = free_of[a * dim + c];
                e[3 + c] = free_of[b * dim + c];
            }
            ends.push(e);
        }
        // J's lower triangle: for each spring, end pair (p, q) and components (c1, c2), the
        // entry (dof(p, c1), dof(q, c2)) gets ±h_e(c1, c2), + on the diagonal blocks.
        let mut pairs = Vec::new();
        let mut contributions = Vec::new(); // (c1, c2, spring, sign)
        for (e, end) in ends.iter().enumerate() {
            for (p, q, sign) in [(0, 0, 1.0), (1, 1, 1.0), (0, 1, -1.0), (1, 0, -1.0)] {
                for c1 in 0..dim {
                    for c2 in 0..dim {
                        if let (Some(r), Some(s)) = (end[3 * p + c1], end[3 * q + c2]) {
                            if r >= s {
                                pairs.push((r, s));
                                contributions.push((c1, c2, e, sign));
                            }
                        }
                    }
                }
            }
        }
        let (jacobian, slots) = Structure::from_pairs(n, n, &pairs, Symmetry::Lower)?;
        let mut blocks: Vec<Block> = Vec::new();
        for c1 in 0..dim {
            for c2 in 0..dim {
                let mut block = Block {
                    c1,
                    c2,
                    springs: Vec::new(),
                    signs: DMatrix::zeros(0, 1),
                    slots: Vec::new(),
                };
                let mut signs = Vec::new();
                for (k, &(d1, d2, e, sign)) in contributions.iter().enumerate() {
                    if (d1, d2) == (c1, c2) {
                        block.springs.push(e);
                        signs.push(sign);
                        block.slots.push(slots[k]);
                    }
                }
                block.signs = DMatrix::from_column_slice(signs.len(), 1, &signs);
                if !block.springs.is_empty() {
                    blocks.push(block);
                }
            }
        }
        let full_pairs: Vec<(usize, usize)> =
            pairs.iter().flat_map(|&(r, s)| [(r, s), (s, r)]).collect();
        let (full, _) = Structure::from_pairs(n, n, &full_pairs, Symmetry::Full)?;
        let total: f64 = lengths.iter().sum();
        let share_scale = DMatrix::from_iterator(
            lengths.len(),
            1,
            lengths.iter().map(|l| (1.0 - k_min) * total / l),
        );
        Ok(SpringNetwork {
            dim,
            coords,
            springs,
            lengths,
            free,
            force,
            k_min,
            ends,
            jacobian,
            blocks,
            full,
            share_scale,
        })
    }

    /// Number of unknowns (free dofs).
    pub fn n(&self) -> usize {
        self.free.len()
    }

    /// The tangent stiffness's pattern with full storage (for a colored Jacobian).
    pub fn full_pattern(&self) -> Arc<Structure> {
        self.full.clone()
    }

    /// The tangent stiffness's lower-triangle pattern (what Newton factors).
    pub fn jacobian_pattern(&self) -> Arc<Structure> {
        self.jacobian.clone()
    }

    /// k(φ) = k_min + softmax(φ) ⊙ c, the material Σ k_e ℓ_e fixed (as [`Cantilever::stiffness`]).
    pub fn stiffness<'t>(&self, phi: Var<'t>) -> Var<'t> {
        let tape = phi.tape();
        let shift = phi.with_value(|v| v.max()).unwrap_or(0.0);
        let e = (phi - shift).exp();
        let s = e / e.sum();
        s * tape.constant(&self.share_scale) + self.k_min
    }

    /// The residual r(u, k) (and, with `jacobian`, the tangent stiffness on
    /// [`SpringNetwork::jacobian_pattern`]) as tape code for [`Tape::equilibrium`]; the
    /// parameters are k (one stiffness per spring) and, optionally, a 1×1 factor on the load.
    pub fn residual(
        self: &Arc<Self>,
        jacobian: bool,
    ) -> impl for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>> + Send + Sync + 'static
    {
        let net = self.clone();
        move |tape, u, params| net.record(tape, u, params[0], params.get(1).copied(), jacobian)
    }

    fn record<'s>(
        &self,
        tape: &'s Tape,
        u: Var<'s>,
        k: Var<'s>,
        scale: Option<Var<'s>>,
        with_jacobian: bool,
    ) -> Result<Residual<'s>> {
        let (dim, m, n) = (self.dim, self.springs.len(), self.n());
        // Each end's displacement component: u gathered at its free index, 0 when clamped
        // (gathered from an appended zero).
        let padded = u.scatter_add(&(0..n).collect::<Vec<_>>(), n + 1);
        let mut x = Vec::with_capacity(dim);
        for c in 0..dim {
            let at = |end: usize| -> Vec<usize> {
                self.ends
                    .iter()
                    .map(|e| e[3 * end + c].unwrap_or(n))
                    .collect()
            };
            let rest = DMatrix::from_iterator(
                m,
                1,
                self.springs
                    .iter()
                    .map(|&(a, b)| self.coords[b * dim + c] - self.coords[a * dim + c]),
            );
            x.push(padded.gather(&at(1)) - padded.gather(&at(0)) + tape.constant(rest));
        }
        let length = x
            .iter()
            .map(|xc| xc.square())
            .reduce(|a, b| a + b)
            .expect("dim ≥ 1")
            .sqrt();
        // Axial stiffness k/L as in the linear model: t = k (1/L − 1/ℓ) is the force per unit of x.
        let inv_rest = tape.constant(DMatrix::from_iterator(
            m,
            1,
            self.lengths.iter().map(|l| 1.0 / l),
        ));
        let inv_length = length.powf(-1.0);
        let tension = k * (inv_rest - inv_length);
        let mut force = tape.constant(DMatrix::zeros(n + 1, 1));
        for (c, xc) in x.iter().enumerate() {
            let g = tension * *xc;
            let to = |end: usize| -> Vec<usize> {
                self.ends
                    .iter()
                    .map(|e| e[3 * end + c].unwrap_or(n))
                    .collect()
            };
            force = force + g.scatter_add(&to(1), n + 1) - g.scatter_add(&to(0), n + 1);
        }
        let load = tape.constant(&self.force);
        let load = match scale {
            Some(s) => load * s,
            None => load,
        };
        let r = force.gather(&(0..n).collect::<Vec<_>>()) - load;
        // E = ½ Σ (k/L)(ℓ − L)² − loadᵀu: Newton's line search descends on it.
        let rest = tape.constant(DMatrix::from_column_slice(m, 1, &self.lengths));
        let energy = ((length - rest).square() * k * inv_rest).sum().scale(0.5) - load.dot(u);
        if !with_jacobian {
            return Ok(Residual::new(r).with_energy(energy));
        }
        // h(c1, c2) = k (x_c1 x_c2 / ℓ³ + δ (1/L − 1/ℓ)).
        let axial = k * inv_length.powf(3.0);
        let nnz = self.jacobian.nnz();
        let mut values = tape.constant(DMatrix::zeros(nnz, 1));
        for b in &self.blocks {
            let mut h = axial * x[b.c1] * x[b.c2];
            if b.c1 == b.c2 {
                h = h + tension;
            }
            let part = h.gather(&b.springs) * tape.constant(&b.signs);
            values = values + part.scatter_add(&b.slots, nnz);
        }
        Ok(
            Residual::with_jacobian(r, tape.with_structure(values, &self.jacobian))
                .with_energy(energy),
        )
    }

    /// The equilibrium u* (free unknowns) for stiffnesses `k`, by Newton from the undeformed
    /// state (the line search descends on the energy, so u* is the minimum that loading from
    /// rest reaches). When Newton fails from there, the load is applied in 4, then 16, then 64
    /// equal increments (each solved from the last, off the tape), and u* is recorded from the
    /// end of that path.
    ///
    /// # Errors
    /// [`Error::Equilibrium`] when every attempt fails (the last attempt's error); the tape's
    /// errors.
    pub fn equilibrium<'t>(
        self: &Arc<Self>,
        k: Var<'t>,
        newton: &Newton,
    ) -> Result<(Var<'t>, NewtonReport)> {
        let tape = k.tape();
        let zero = DMatrix::zeros(self.n(), 1);
        // Always from the undeformed state: with large rotations a design can have several
        // equilibria, and the compliance must be a function of the design, not of the history.
        let start = zero.clone();
        let one = tape.constant_scalar(1.0);
        let mut solved = tape.equilibrium(&[k, one], &start, self.residual(true), newton);
        for increments in [4, 16, 64] {
            if solved.is_ok() {
                break;
            }
            let Ok(path_end) = self.load_path(k.value()?.clone(), increments, newton) else {
                continue;
            };
            solved = tape.equilibrium(&[k, one], &path_end, self.residual(true), newton);
        }
        solved
    }

    /// The equilibrium under the full load reached by `increments` equal load steps from zero,
    /// each Newton solve starting from the last (on a scratch tape; no derivatives).
    fn load_path(
        self: &Arc<Self>,
        k: DMatrix<f64>,
        increments: usize,
        newton: &Newton,
    ) -> Result<DMatrix<f64>> {
        let mut u = DMatrix::zeros(self.n(), 1);
        for step in 1..=increments {
            let tape = Tape::new();
            let kv = tape.constant(&k);
            let s = tape.constant_scalar(step as f64 / increments as f64);
            let (x, _) = tape.equilibrium(&[kv, s], &u, self.residual(true), newton)?;
            u = x.value()?.clone();
        }
        Ok(u)
    }

    /// Compliance fᵀu* at the nonlinear equilibrium for stiffnesses `k`.
    ///
    /// # Errors
    /// As [`SpringNetwork::equilibrium`].
    pub fn compliance<'t>(self: &Arc<Self>, k: Var<'t>, newton: &Newton) -> Result<Var<'t>> {
        let (u, _) = self.equilibrium(k, newton)?;
        Ok(u.dot(k.tape().constant(&self.force)))
    }

    /// The full displacement vector (dim per node, clamped zero) from free unknowns `u`.
    pub fn full_displacement(&self, u: &[f64]) -> Vec<f64> {
        let mut full = vec![0.0; self.coords.len()];
        for (i, &d) in self.free.iter().enumerate() {
            full[d] = u[i];
        }
        full
    }

    /// The default Newton for these networks: LDLᵀ (J may be indefinite away from a stable
    /// equilibrium), ‖r‖ ≤ 1e-10 ‖f‖, at most 200 iterations (a large load on a design with
    /// nearly floppy members can take many damped steps).
    pub fn newton(&self) -> Newton {
        Newton::new(Solver::ldlt())
            .with_tolerance(1e-10 * self.force.norm(), 0.0)
            .with_max_iterations(200)
    }
}

/// Minimize the compliance fᵀu* at the nonlinear equilibrium over the design φ.
#[derive(Debug, Clone)]
pub struct NonlinearCompliance {
    /// The network.
    pub network: Arc<SpringNetwork>,
    /// Newton's settings.
    pub newton: Newton,
}

impl Objective for NonlinearCompliance {
    fn loss<'t>(&self, _tape: &'t Tape, phi: Var<'t>) -> Result<Var<'t>> {
        self.network
            .compliance(self.network.stiffness(phi), &self.newton)
    }
}
