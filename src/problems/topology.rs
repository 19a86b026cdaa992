//! Density-based topology optimization on a structured grid of unit square (Q4) elements: the
//! element matrices (plane-stress elasticity, heat conduction; the 3D hex8 conduction matrix
//! beside [`hex8_stiffness`](super::elasticity::hex8_stiffness)), the density filter as a sparse
//! constant (its pattern validated once per problem), Heaviside projection and SIMP interpolation as tape operations, and two classic
//! problems as [`ConstrainedObjective`]s for [`minimize_constrained`](crate::optim::minimize_constrained)
//! (MMA): the MBB beam (minimum compliance) and volume-to-point heat conduction.
//!
//! Numbering: nodes (x, y) with 0 ≤ x ≤ nx, 0 ≤ y ≤ ny (y up), node x + (nx + 1)·y; element
//! (ex, ey) is ex + nx·ey; its local corner i = dx + 2·dy is node (ex + dx, ey + dy); a node's
//! unknowns are consecutive (2·node + c for elasticity, node for temperature).
//!
//! ```
//! use sparsegrad::optim::{minimize_constrained, MmaSettings};
//! use sparsegrad::problems::topology::TopologyProblem;
//! // A small MBB beam, 20 MMA iterations.
//! let problem = TopologyProblem::mbb(24, 8, 0.5, 1.5)?;
//! let x0 = vec![0.5; problem.grid.n_elements()];
//! let settings = MmaSettings { max_iters: 20, move_limit: 0.1, ..MmaSettings::new([0.0], [1.0]) };
//! let out = minimize_constrained(&problem, &x0[..], &settings, None)?;
//! let (c0, c) = (problem.compliance_of(&x0)?, problem.compliance_of(&out.params)?);
//! assert!(c < 0.7 * c0, "compliance {c0} → {c}");
//! assert!(problem.volume_of(&out.params)? <= 0.5 + 1e-3);
//! # Ok::<(), sparsegrad::Error>(())
//! ```

use std::sync::Arc;

use nalgebra::{DMatrix, SMatrix};
use nalgebra_sparse::{CooMatrix, CscMatrix};

use crate::error::{Error, Result};
use crate::optim::ConstrainedObjective;
use crate::solve::Solver;
use crate::sparse::{Assembly, Dirichlet, Structure, Symmetry};
use crate::tape::{Tape, Var};

/// Corner i = dx + 2·dy of the unit square: (dx, dy).
fn corner(i: usize) -> (usize, usize) {
    (i & 1, (i >> 1) & 1)
}

/// ∂N_i/∂x and ∂N_i/∂y of the bilinear shape functions on the unit square at (x, y).
fn shape_gradients(x: f64, y: f64) -> [[f64; 2]; 4] {
    let mut g = [[0.0; 2]; 4];
    for (i, gi) in g.iter_mut().enumerate() {
        let (dx, dy) = corner(i);
        let f = |t: f64, on: usize| if on == 1 { t } else { 1.0 - t };
        let s = |on: usize| if on == 1 { 1.0 } else { -1.0 };
        *gi = [s(dx) * f(y, dy), f(x, dx) * s(dy)];
    }
    g
}

/// The 2 × 2 Gauss points of the unit square (weight 1/4 each).
fn gauss_points() -> [(f64, f64); 4] {
    let g = 0.5 / 3f64.sqrt();
    let (a, b) = (0.5 - g, 0.5 + g);
    [(a, a), (b, a), (a, b), (b, b)]
}

/// The 8 × 8 plane-stress stiffness of the unit square with Young's modulus 1, Poisson ratio
/// `nu` and unit thickness; unknowns corner-major (2·i + c), corners i = dx + 2·dy. Equal to
/// the closed form of Sigmundʼs 88-line code, e.g. K₀₀ = (1/2 − ν/6) / (1 − ν²).
///
/// ```
/// let nu = 0.3;
/// let k = sparsegrad::problems::topology::q4_stiffness(nu);
/// assert!((k[(0, 0)] - (0.5 - nu / 6.0) / (1.0 - nu * nu)).abs() < 1e-14);
/// assert!((k[(0, 1)] - (1.0 / 8.0 + nu / 8.0) / (1.0 - nu * nu)).abs() < 1e-14);
/// // Rigid translations carry no energy.
/// assert!((0..4).map(|i| k[(0, 2 * i)]).sum::<f64>().abs() < 1e-14);
/// ```
pub fn q4_stiffness(nu: f64) -> DMatrix<f64> {
    let e = 1.0 / (1.0 - nu * nu);
    let d = SMatrix::<f64, 3, 3>::new(
        e,
        e * nu,
        0.0,
        e * nu,
        e,
        0.0,
        0.0,
        0.0,
        e * (1.0 - nu) / 2.0,
    );
    let mut k = SMatrix::<f64, 8, 8>::zeros();
    for (x, y) in gauss_points() {
        let g = shape_gradients(x, y);
        let mut b = SMatrix::<f64, 3, 8>::zeros();
        for (i, [nx, ny]) in g.into_iter().enumerate() {
            b[(0, 2 * i)] = nx;
            b[(1, 2 * i + 1)] = ny;
            b[(2, 2 * i)] = ny;
            b[(2, 2 * i + 1)] = nx;
        }
        k += b.transpose() * d * b * 0.25;
    }
    let k = (k + k.transpose()) * 0.5;
    DMatrix::from_column_slice(8, 8, k.as_slice())
}

/// The 4 × 4 conduction matrix ∫ ∇N_iᵀ ∇N_j of the unit square (conductivity 1), corners
/// i = dx + 2·dy: 2/3 on the diagonal, −1/6 along an edge, −1/3 across.
///
/// ```
/// let k = sparsegrad::problems::topology::q4_conduction();
/// assert!((k[(0, 0)] - 2.0 / 3.0).abs() < 1e-15 && (k[(0, 1)] + 1.0 / 6.0).abs() < 1e-15);
/// assert!((k[(0, 3)] + 1.0 / 3.0).abs() < 1e-15);
/// ```
pub fn q4_conduction() -> DMatrix<f64> {
    let mut k = DMatrix::zeros(4, 4);
    for (x, y) in gauss_points() {
        let g = shape_gradients(x, y);
        for i in 0..4 {
            for j in 0..4 {
                k[(i, j)] += 0.25 * (g[i][0] * g[j][0] + g[i][1] * g[j][1]);
            }
        }
    }
    k
}

/// The 8 × 8 conduction matrix ∫ ∇N_iᵀ ∇N_j of the unit cube (trilinear hex8, conductivity 1),
/// corners i = dx + 2·dy + 4·dz as in [`hex8_stiffness`](super::elasticity::hex8_stiffness) (the
/// 3D elasticity element): 1/3 on the diagonal, 0 along an edge, −1/12 across a face and
/// across the body.
///
/// ```
/// let k = sparsegrad::problems::topology::hex8_conduction();
/// assert!((k[(0, 0)] - 1.0 / 3.0).abs() < 1e-15 && k[(0, 1)].abs() < 1e-15);
/// assert!((k[(0, 3)] + 1.0 / 12.0).abs() < 1e-15 && (k[(0, 7)] + 1.0 / 12.0).abs() < 1e-15);
/// ```
pub fn hex8_conduction() -> DMatrix<f64> {
    let g = 0.5 / 3f64.sqrt();
    let points = [0.5 - g, 0.5 + g];
    let mut k = DMatrix::zeros(8, 8);
    for &z in &points {
        for &y in &points {
            for &x in &points {
                let grad: Vec<[f64; 3]> = (0..8)
                    .map(|i| {
                        let (dx, dy, dz) = (i & 1, (i >> 1) & 1, (i >> 2) & 1);
                        let f = |t: f64, on: usize| if on == 1 { t } else { 1.0 - t };
                        let s = |on: usize| if on == 1 { 1.0 } else { -1.0 };
                        [
                            s(dx) * f(y, dy) * f(z, dz),
                            f(x, dx) * s(dy) * f(z, dz),
                            f(x, dx) * f(y, dy) * s(dz),
                        ]
                    })
                    .collect();
                for i in 0..8 {
                    for j in 0..8 {
                        let d: f64 = (0..3).map(|c| grad[i][c] * grad[j][c]).sum();
                        k[(i, j)] += 0.125 * d;
                    }
                }
            }
        }
    }
    k
}

/// A structured grid of nx × ny unit square elements (see the module docs for the numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Elements along x.
    pub nx: usize,
    /// Elements along y.
    pub ny: usize,
}

impl Grid {
    /// A grid of nx × ny elements.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty grid or one of more than 2³² nodes.
    pub fn new(nx: usize, ny: usize) -> Result<Self> {
        let nodes = (nx + 1).checked_mul(ny + 1);
        if nx == 0 || ny == 0 || nodes.is_none_or(|n| n > 1 << 32) {
            return Err(Error::InvalidArgument {
                what: "topology grid",
                reason: format!("need 1 ≤ nx, ny and at most 2³² nodes, got {nx} × {ny}"),
            });
        }
        Ok(Grid { nx, ny })
    }

    /// Number of elements (design variables).
    pub fn n_elements(&self) -> usize {
        self.nx * self.ny
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        (self.nx + 1) * (self.ny + 1)
    }

    /// The node at (x, y).
    pub fn node(&self, x: usize, y: usize) -> usize {
        x + (self.nx + 1) * y
    }

    /// The four nodes of element e, corner i = dx + 2·dy at index i.
    pub fn element_nodes(&self, e: usize) -> [usize; 4] {
        let (ex, ey) = (e % self.nx, e / self.nx);
        [0, 1, 2, 3].map(|i| {
            let (dx, dy) = corner(i);
            self.node(ex + dx, ey + dy)
        })
    }

    /// K(θ) = Σ_e θ_e K̂ over all elements with `dofs_per_node` unknowns per node (the element
    /// matrix `ke` corner-major), lower triangle stored.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `ke` is (4·dofs_per_node)²; assembly errors.
    pub fn assembly(&self, ke: &DMatrix<f64>, dofs_per_node: usize) -> Result<Assembly> {
        let m = 4 * dofs_per_node;
        if ke.shape() != (m, m) {
            return Err(Error::ShapeMismatch {
                op: "topology element matrix",
                left: ke.shape(),
                right: (m, m),
            });
        }
        let n = self.n_nodes() * dofs_per_node;
        let mut b = Assembly::builder(n, n, self.n_elements()).symmetry(Symmetry::Lower);
        b.reserve(self.n_elements().saturating_mul(m * (m + 1) / 2))?;
        let mut dofs = vec![0; m];
        for e in 0..self.n_elements() {
            for (i, node) in self.element_nodes(e).into_iter().enumerate() {
                for c in 0..dofs_per_node {
                    dofs[dofs_per_node * i + c] = dofs_per_node * node + c;
                }
            }
            b.push_element(&dofs, e, ke);
        }
        b.build()
    }

    /// The density filter of Bruns and Tortorelli: x̃_e = Σ_f H_ef x_f / Σ_f H_ef with
    /// H_ef = max(0, r − ‖c_e − c_f‖) between element centres — a row-normalized sparse matrix
    /// for [`Tape::csc_constant`] and [`Tape::spmul`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless 0 < r ≤ the grid's diagonal + 1.
    pub fn density_filter(&self, radius: f64) -> Result<CscMatrix<f64>> {
        // Past the grid's diagonal every element averages the whole design (and the filter
        // would be a dense n × n matrix): refused rather than built.
        let diagonal = (self.nx as f64).hypot(self.ny as f64);
        if !(radius.is_finite() && radius > 0.0 && radius <= diagonal + 1.0) {
            return Err(Error::InvalidArgument {
                what: "density filter radius",
                reason: format!(
                    "must be positive and at most the grid's diagonal + 1 ({:.1} elements), got {radius}",
                    diagonal + 1.0
                ),
            });
        }
        let reach = radius.ceil() as isize - 1;
        let (nx, ny) = (self.nx as isize, self.ny as isize);
        let n = self.n_elements();
        let mut coo = CooMatrix::new(n, n);
        let mut row = Vec::new();
        for e in 0..n {
            let (ex, ey) = ((e % self.nx) as isize, (e / self.nx) as isize);
            row.clear();
            for fy in (ey - reach).max(0)..=(ey + reach).min(ny - 1) {
                for fx in (ex - reach).max(0)..=(ex + reach).min(nx - 1) {
                    let d = (((fx - ex).pow(2) + (fy - ey).pow(2)) as f64).sqrt();
                    if d < radius {
                        row.push(((fx + nx * fy) as usize, radius - d));
                    }
                }
            }
            let total: f64 = row.iter().map(|(_, h)| h).sum();
            for &(f, h) in &row {
                coo.push(e, f, h / total);
            }
        }
        Ok(CscMatrix::from(&coo))
    }
}

/// SIMP interpolation E(x) = E_min + (1 − E_min)·xᵖ of densities in [0, 1].
pub fn simp(density: Var<'_>, penalty: f64, minimum: f64) -> Var<'_> {
    density.powf(penalty) * (1.0 - minimum) + minimum
}

/// Heaviside projection (Wang, Lazarov and Sigmund 2011):
/// (tanh βη + tanh β(x − η)) / (tanh βη + tanh β(1 − η)), 0 ↦ 0 and 1 ↦ 1, steeper with β.
pub fn heaviside(density: Var<'_>, beta: f64, eta: f64) -> Var<'_> {
    // tanh z = 2σ(2z) − 1 on the tape.
    let tanh_shift = ((density - eta) * (2.0 * beta)).sigmoid() * 2.0 - 1.0;
    let (a, b) = ((beta * eta).tanh(), (beta * (1.0 - eta)).tanh());
    (tanh_shift + a) / (a + b)
}

/// Which physics a [`TopologyProblem`] solves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Physics {
    /// Plane-stress elasticity (2 unknowns per node) with this Poisson ratio.
    Elasticity {
        /// Poisson ratio.
        nu: f64,
    },
    /// Steady heat conduction (1 unknown per node).
    HeatConduction,
}

/// A minimum-compliance problem under a volume constraint: design x ∈ [0, 1] per element,
/// physical density x̄ = filter(x) (then Heaviside-projected if [`TopologyProblem::projection`]
/// is set), stiffness or conductivity SIMP(x̄), compliance fᵀu with K(x̄) u = f.
/// As a [`ConstrainedObjective`] (the scaling of pymoto's examples, which MMA's constants
/// expect): f₀ = [`TopologyProblem::objective_scale`] · fᵀu, and one constraint
/// 10 (mean x̄ / V − 1) ≤ 0.
#[derive(Debug, Clone)]
pub struct TopologyProblem {
    /// The grid.
    pub grid: Grid,
    /// The physics.
    pub physics: Physics,
    /// Volume fraction V.
    pub volume_fraction: f64,
    /// SIMP exponent (3).
    pub penalty: f64,
    /// SIMP's void stiffness relative to solid (1e-9 for elasticity, 1e-3 for conduction).
    pub minimum: f64,
    /// Heaviside projection (β, η) after the filter, or none.
    pub projection: Option<(f64, f64)>,
    /// Factor on the compliance in the objective (1 unless set; the examples set 100 / c(x₀)).
    pub objective_scale: f64,
    /// The density filter's pattern (validated once) and values, recorded as a constant on each
    /// evaluation's tape.
    filter: Arc<Structure>,
    filter_values: Vec<f64>,
    dirichlet: Dirichlet,
    load: DMatrix<f64>,
}

impl TopologyProblem {
    fn new(
        grid: Grid,
        physics: Physics,
        volume_fraction: f64,
        filter_radius: f64,
        fixed: &[usize],
        load: DMatrix<f64>,
    ) -> Result<Self> {
        if !(volume_fraction > 0.0 && volume_fraction <= 1.0) {
            return Err(Error::InvalidArgument {
                what: "volume fraction",
                reason: format!("must be in (0, 1], got {volume_fraction}"),
            });
        }
        let (ke, dofs, minimum) = match physics {
            Physics::Elasticity { nu } => (q4_stiffness(nu), 2, 1e-9),
            Physics::HeatConduction => (q4_conduction(), 1, 1e-3),
        };
        let assembly = grid.assembly(&ke, dofs)?;
        let filter = grid.density_filter(filter_radius)?;
        let filter_values = filter.values().to_vec();
        let (col_ptr, row_idx, _) = filter.disassemble();
        let n = grid.n_elements();
        let filter = Structure::new(n, n, col_ptr, row_idx, Symmetry::General)?;
        Ok(TopologyProblem {
            grid,
            physics,
            volume_fraction,
            penalty: 3.0,
            minimum,
            projection: None,
            objective_scale: 1.0,
            filter,
            filter_values,
            dirichlet: Dirichlet::new(&assembly, fixed)?,
            load,
        })
    }

    /// The half MBB beam of Sigmund's 99- and 88-line codes on nx × ny elements (ν = 0.3):
    /// symmetry on the left edge (x-displacements fixed), a roller at the bottom right corner
    /// (y fixed), a unit downward load at the top left node.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty grid, V ∉ (0, 1] or a bad filter radius.
    pub fn mbb(nx: usize, ny: usize, volume_fraction: f64, filter_radius: f64) -> Result<Self> {
        let grid = Grid::new(nx, ny)?;
        let mut fixed: Vec<usize> = (0..=ny).map(|y| 2 * grid.node(0, y)).collect();
        fixed.push(2 * grid.node(nx, 0) + 1);
        let mut load = DMatrix::zeros(2 * grid.n_nodes(), 1);
        load[2 * grid.node(0, ny) + 1] = -1.0;
        let physics = Physics::Elasticity { nu: 0.3 };
        Self::new(grid, physics, volume_fraction, filter_radius, &fixed, load)
    }

    /// Volume-to-point heat conduction on an n × n plate (the heat-conduction variant of the
    /// 88-line code): heat 0.01 generated at every node, a heat sink (temperature 0) on the
    /// middle tenth of the left edge, conductivity SIMP with minimum 1e-3; the thermal
    /// compliance fᵀT is minimized.
    ///
    /// # Errors
    /// As [`TopologyProblem::mbb`].
    pub fn heat_sink(n: usize, volume_fraction: f64, filter_radius: f64) -> Result<Self> {
        let grid = Grid::new(n, n)?;
        let (mid, half) = (n / 2, (n / 20).max(1));
        let fixed: Vec<usize> = (mid.saturating_sub(half)..=(mid + half).min(n))
            .map(|y| grid.node(0, y))
            .collect();
        let load = DMatrix::from_element(grid.n_nodes(), 1, 0.01);
        Self::new(
            grid,
            Physics::HeatConduction,
            volume_fraction,
            filter_radius,
            &fixed,
            load,
        )
    }

    /// The filtered (and projected) density x̄ of design x.
    ///
    /// # Errors
    /// Shape errors of the filter product.
    pub fn physical_density<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        let tape = x.tape();
        let filter = tape.sparse_constant(&self.filter, &self.filter_values)?;
        let filtered = tape.spmul(filter, x)?;
        Ok(match self.projection {
            Some((beta, eta)) => heaviside(filtered, beta, eta),
            None => filtered,
        })
    }

    /// The compliance fᵀu of design x (one Cholesky solve).
    ///
    /// # Errors
    /// As [`TopologyProblem::physical_density`] and [`Dirichlet::solve_homogeneous`].
    pub fn compliance<'t>(&self, x: Var<'t>) -> Result<Var<'t>> {
        self.compliance_of_density(self.physical_density(x)?)
    }

    /// The compliance fᵀu for physical densities x̄.
    fn compliance_of_density<'t>(&self, density: Var<'t>) -> Result<Var<'t>> {
        let tape = density.tape();
        let stiffness = simp(density, self.penalty, self.minimum);
        let f = tape.constant(self.load.clone());
        let u = self
            .dirichlet
            .solve_homogeneous(stiffness, f, &Solver::cholesky())?;
        Ok(u.dot(f))
    }

    /// The compliance of a design given as numbers.
    ///
    /// # Errors
    /// As [`TopologyProblem::compliance`].
    pub fn compliance_of(&self, x: &[f64]) -> Result<f64> {
        let tape = Tape::new();
        self.compliance(tape.constant(x))?.scalar()
    }

    /// The state u (displacements or temperatures, one column per load) of design x.
    ///
    /// # Errors
    /// As [`TopologyProblem::compliance`].
    pub fn state_of(&self, x: &[f64]) -> Result<DMatrix<f64>> {
        let tape = Tape::new();
        let x = tape.constant(x);
        let stiffness = simp(self.physical_density(x)?, self.penalty, self.minimum);
        let f = tape.constant(self.load.clone());
        self.dirichlet
            .solve_homogeneous(stiffness, f, &Solver::cholesky())?
            .value()
    }

    /// The physical densities x̄ of a design given as numbers.
    ///
    /// # Errors
    /// As [`TopologyProblem::physical_density`].
    pub fn physical_density_of(&self, x: &[f64]) -> Result<Vec<f64>> {
        let tape = Tape::new();
        Ok(self
            .physical_density(tape.constant(x))?
            .value()?
            .as_slice()
            .to_vec())
    }

    /// The volume fraction mean(x̄) of a design.
    ///
    /// # Errors
    /// As [`TopologyProblem::physical_density`].
    pub fn volume_of(&self, x: &[f64]) -> Result<f64> {
        let d = self.physical_density_of(x)?;
        Ok(d.iter().sum::<f64>() / d.len() as f64)
    }
}

impl ConstrainedObjective for TopologyProblem {
    fn evaluate<'t>(&self, _tape: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
        let density = self.physical_density(x)?;
        let compliance = self.compliance_of_density(density)? * self.objective_scale;
        let volume = (density.mean() / self.volume_fraction - 1.0) * 10.0;
        Ok((compliance, volume))
    }
}
