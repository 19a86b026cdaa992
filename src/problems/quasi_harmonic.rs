//! Quasi-harmonic interpolation weights (after Wang & Solomon, "Fast Quasi-Harmonic Weights for
//! Geometric Data Interpolation", SIGGRAPH 2021).
//!
//! The weights w_i solve ∇·(D ∇w_i) = 0 with w_i(handle j) = δ_ij, so the constant function is
//! reproduced (partition of unity) for any diffusivity. Each triangle t has
//! Dₜ = R(αₜ) diag(e^{βₜ}, e^{−βₜ}) R(αₜ)ᵀ, i.e.
//! d11 = cos²α e^β + sin²α e^{−β}, d22 = sin²α e^β + cos²α e^{−β}, d12 = cos α sin α (e^β − e^{−β});
//! K(D) is linear in those entries (an [`Assembly`]), the handles are eliminated with
//! [`Dirichlet`], and all h weight functions come from one multi-RHS solve with one factorization
//! per evaluation (numeric refactor only: the pattern never changes).
//!
//! Parameters x = [α (T); β (T)]. The objective is E(W) / E(W_harmonic) + μ Σₜ (|t| / |t̄|) βₜ²: the
//! energy is normalized by its value for harmonic weights (D = I), so the objective starts at 1 and
//! μ means the same on every mesh and energy; the regularization is scaled by triangle area
//! relative to the mean area. Energies E:
//! - [`Energy::Smooth`]: Σ_i w_iᵀ L M⁻¹ L w_i (L the isotropic cotangent stiffness, M lumped mass);
//! - [`Energy::Local`]: Σ_i Σ_v m_v w_iv² ‖x_v − p_i‖².

use std::sync::Arc;

use nalgebra::DMatrix;

use super::mesh::TriMesh;
use crate::error::{Error, Result};
use crate::optim::Objective;
use crate::solve::Solver;
use crate::sparse::{Assembly, Dirichlet, Structure};
use crate::tape::{Tape, Var};

/// Which energy of the weights is minimized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Energy {
    /// The biharmonic energy Σ_i w_iᵀ L M⁻¹ L w_i.
    Smooth,
    /// Locality: Σ_i Σ_v m_v w_iv² ‖x_v − p_i‖².
    Local,
}

/// The quasi-harmonic weights problem on a mesh with handle vertices.
#[derive(Debug, Clone)]
pub struct QuasiHarmonic {
    /// The mesh.
    pub mesh: TriMesh,
    /// Handle vertex ids, in handle order.
    pub handles: Vec<usize>,
    /// Which energy.
    pub energy: Energy,
    /// Regularization weight μ.
    pub mu: f64,
    assembly: Assembly,
    dirichlet: Dirichlet,
    /// Prescribed values on the fixed (handle) unknowns, rows in `dirichlet.fixed()` order.
    handle_values: DMatrix<f64>,
    laplacian: (Arc<Structure>, Vec<f64>),
    /// Per (vertex, handle) weights of the squared terms: 1/m_v (smooth) or m_v‖x_v − p_i‖² (local).
    row_weights: DMatrix<f64>,
    /// |t| / mean |t|.
    area_ratio: DMatrix<f64>,
    /// 1 / E(harmonic weights).
    energy_scale: f64,
}

impl QuasiHarmonic {
    /// Sets up the problem.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for fewer than two handles or repeated handles;
    /// [`Error::IndexOutOfRange`] for a handle that is not a vertex.
    pub fn new(mesh: TriMesh, handles: Vec<usize>, energy: Energy, mu: f64) -> Result<Self> {
        let n = mesh.vertices.len();
        if let Some(e) = handles.iter().position(|&v| v >= n) {
            return Err(Error::IndexOutOfRange {
                context: "handles",
                entry: e,
                what: "vertex",
                index: handles[e],
                bound: n,
            });
        }
        let mut sorted = handles.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != handles.len() || handles.len() < 2 {
            return Err(Error::InvalidArgument {
                what: "handles",
                reason: format!("need at least two distinct handles, got {handles:?}"),
            });
        }
        let assembly = mesh.anisotropic_stiffness()?;
        let dirichlet = Dirichlet::new(&assembly, &handles)?;
        let h = handles.len();
        let handle_values = DMatrix::from_fn(h, h, |r, i| {
            if dirichlet.fixed()[r] == handles[i] {
                1.0
            } else {
                0.0
            }
        });
        let laplacian = mesh.cotangent_laplacian()?;
        let mass = mesh.lumped_mass()?;
        let row_weights = match energy {
            Energy::Smooth => DMatrix::from_fn(n, h, |v, _| 1.0 / mass[v]),
            Energy::Local => DMatrix::from_fn(n, h, |v, i| {
                let (x, p) = (mesh.vertices[v], mesh.vertices[handles[i]]);
                mass[v] * ((x[0] - p[0]).powi(2) + (x[1] - p[1]).powi(2))
            }),
        };
        let areas = mesh.areas()?;
        let mean = areas.iter().sum::<f64>() / areas.len() as f64;
        let area_ratio = DMatrix::from_iterator(areas.len(), 1, areas.iter().map(|a| a / mean));
        let mut problem = QuasiHarmonic {
            mesh,
            handles,
            energy,
            mu,
            assembly,
            dirichlet,
            handle_values,
            laplacian,
            row_weights,
            area_ratio,
            energy_scale: 1.0,
        };
        let tape = Tape::new();
        let x = tape.constant(DMatrix::from_vec(
            2 * problem.n_triangles(),
            1,
            problem.harmonic_parameters(),
        ));
        let harmonic = problem.energy_of(problem.weights(x)?)?.scalar()?;
        if !(harmonic > 0.0 && harmonic.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "quasi-harmonic problem",
                reason: format!(
                    "the harmonic weights have energy {harmonic:e}; nothing to normalize by"
                ),
            });
        }
        problem.energy_scale = 1.0 / harmonic;
        Ok(problem)
    }

    /// The structure that is factored every evaluation (the free-unknown stiffness K_ff).
    pub fn solved_structure(&self) -> &Arc<Structure> {
        self.dirichlet.free_assembly().structure()
    }

    /// Number of triangles T (the parameter vector has 2T entries: α then β).
    pub fn n_triangles(&self) -> usize {
        self.mesh.triangles.len()
    }

    /// The stiffness assembly K(D).
    pub fn assembly(&self) -> &Assembly {
        &self.assembly
    }

    /// The diffusivity entries [d11; d12; d22] (3T × 1) from x = [α; β].
    pub fn diffusivity<'t>(&self, x: Var<'t>) -> Var<'t> {
        let nt = self.n_triangles();
        let alpha = x.gather(&(0..nt).collect::<Vec<_>>());
        let beta = x.gather(&(nt..2 * nt).collect::<Vec<_>>());
        let (c, s) = (alpha.cos(), alpha.sin());
        let (ep, em) = (beta.exp(), (-beta).exp());
        let (cc, ss) = (c.square(), s.square());
        let d11 = cc * ep + ss * em;
        let d22 = ss * ep + cc * em;
        let d12 = c * s * (ep - em);
        let block = |k: usize| (k * nt..(k + 1) * nt).collect::<Vec<_>>();
        d11.scatter_add(&block(0), 3 * nt)
            + d12.scatter_add(&block(1), 3 * nt)
            + d22.scatter_add(&block(2), 3 * nt)
    }

    /// All h weight functions W (n × h) for x = [α; β]: one factorization, one h-column solve.
    ///
    /// # Errors
    /// Errors of the solve.
    pub fn weights<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        let tape = x.tape();
        let (n, h) = (self.mesh.vertices.len(), self.handles.len());
        let f = tape.constant(DMatrix::zeros(n, h));
        let g = tape.constant(self.handle_values.clone());
        self.dirichlet
            .solve(self.diffusivity(x), f, g, &Solver::cholesky())
    }

    /// The energy of the weights W (without regularization).
    ///
    /// # Errors
    /// Shape errors of the tape ops.
    pub fn energy_of<'t>(&self, w: Var<'t>) -> Result<Var<'t>> {
        let tape = w.tape();
        let squared = match self.energy {
            Energy::Smooth => {
                let l = tape.sparse_constant(&self.laplacian.0, &self.laplacian.1)?;
                tape.spmul(l, w)?.square()
            }
            Energy::Local => w.square(),
        };
        Ok((squared * tape.constant(self.row_weights.clone())).sum())
    }

    /// The initial parameters of harmonic weights: α = 0, β = 0 (D = I).
    pub fn harmonic_parameters(&self) -> Vec<f64> {
        vec![0.0; 2 * self.n_triangles()]
    }
}

impl Objective for QuasiHarmonic {
    fn loss<'t>(&self, tape: &'t Tape, x: Var<'t>) -> Result<Var<'t>> {
        let nt = self.n_triangles();
        let w = self.weights(x)?;
        let beta = x.gather(&(nt..2 * nt).collect::<Vec<_>>());
        let reg = (beta.square() * tape.constant(self.area_ratio.clone())).sum() * self.mu;
        Ok(self.energy_of(w)? * self.energy_scale + reg)
    }
}
