//! The 3D mass-spring cantilever: an nx × ny × nz lattice of nodes (unit spacing; x along the
//! beam, y across, z up) joined by springs to its 26 neighbours (13 directions per node), clamped
//! on the x = 0 face, loaded downward (−z) at the centre of the free end.
//!
//! Same model as the 2D [`Cantilever`](super::cantilever::Cantilever): K(k) = Σ_e k_e K̂_e with
//! the axial element stiffness K̂_e = [d dᵀ, −d dᵀ; −d dᵀ, d dᵀ] / ℓ_e (3 unknowns per node), and
//! k = k_min + softmax(φ) ⊙ c with c_e = (1 − k_min) Σℓ / ℓ_e, so the material Σ k_e ℓ_e equals that
//! of the uniform design k = 1 for every design φ.

use std::sync::Arc;

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::optim::Objective;
use crate::solve::Solver;
use crate::sparse::{Assembly, Dirichlet, Symmetry};
use crate::tape::{Tape, Var};

/// The 3D lattice, its stiffness assembly, supports and load.
#[derive(Debug, Clone)]
pub struct Cantilever3d {
    /// Nodes along the beam (x).
    pub nx: usize,
    /// Nodes across (y).
    pub ny: usize,
    /// Nodes in height (z).
    pub nz: usize,
    /// Node coordinates; node id = (z · ny + y) · nx + x.
    pub nodes: Vec<[f64; 3]>,
    /// Springs as node pairs.
    pub springs: Vec<(usize, usize)>,
    /// Spring lengths ℓ_e.
    pub lengths: Vec<f64>,
    /// The node carrying the load.
    pub load_node: usize,
    /// Lower bound on every stiffness.
    pub k_min: f64,
    dirichlet: Dirichlet,
    force: DMatrix<f64>,
    share_scale: DMatrix<f64>,
}

impl Cantilever3d {
    /// Builds the lattice with `nx × ny × nz` nodes and stiffness floor `k_min`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a side below 2 or k_min outside [0, 1);
    /// [`Error::OutOfMemory`] for more than 2³² nodes.
    pub fn new(nx: usize, ny: usize, nz: usize, k_min: f64) -> Result<Self> {
        if nx < 2 || ny < 2 || nz < 2 || !(0.0..1.0).contains(&k_min) {
            return Err(Error::InvalidArgument {
                what: "cantilever size",
                reason: format!(
                    "a 3D cantilever needs every side ≥ 2 and 0 ≤ k_min < 1, got {nx} × {ny} × {nz}, k_min = {k_min}"
                ),
            });
        }
        let count = nx
            .checked_mul(ny)
            .and_then(|a| a.checked_mul(nz))
            .filter(|&n| n <= 1 << 32)
            .ok_or_else(|| Error::OutOfMemory {
                what: format!("a {nx} × {ny} × {nz} lattice"),
                reason: "more than 2³² nodes".into(),
            })?;
        let id = |x: usize, y: usize, z: usize| (z * ny + y) * nx + x;
        let nodes: Vec<[f64; 3]> = (0..count)
            .map(|v| {
                [
                    (v % nx) as f64,
                    ((v / nx) % ny) as f64,
                    (v / (nx * ny)) as f64,
                ]
            })
            .collect();
        // The 13 directions whose first non-zero component is positive: each neighbour pair once.
        let directions: Vec<[i64; 3]> = (-1..=1)
            .flat_map(|a| (-1..=1).flat_map(move |b| (-1..=1).map(move |c| [a, b, c])))
            .filter(|d| d.iter().find(|&&v| v != 0).is_some_and(|&v| v > 0))
            .collect();
        let mut springs = Vec::new();
        for (v, p) in nodes.iter().enumerate() {
            for d in &directions {
                let q = [p[0] as i64 + d[0], p[1] as i64 + d[1], p[2] as i64 + d[2]];
                let inside = (q[0] >= 0 && q[0] < nx as i64)
                    && (q[1] >= 0 && q[1] < ny as i64)
                    && (q[2] >= 0 && q[2] < nz as i64);
                if inside {
                    springs.push((v, id(q[0] as usize, q[1] as usize, q[2] as usize)));
                }
            }
        }
        let n_dof = 3 * count;
        let mut lengths = Vec::with_capacity(springs.len());
        let mut b = Assembly::builder(n_dof, n_dof, springs.len()).symmetry(Symmetry::Lower);
        for (e, &(a, c)) in springs.iter().enumerate() {
            let delta: Vec<f64> = (0..3).map(|i| nodes[c][i] - nodes[a][i]).collect();
            let len = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
            lengths.push(len);
            let d = [
                delta[0] / len,
                delta[1] / len,
                delta[2] / len,
                -delta[0] / len,
                -delta[1] / len,
                -delta[2] / len,
            ];
            let ke = DMatrix::from_fn(6, 6, |r, s| d[r] * d[s] / len);
            b.push_element(
                &[3 * a, 3 * a + 1, 3 * a + 2, 3 * c, 3 * c + 1, 3 * c + 2],
                e,
                &ke,
            );
        }
        let assembly = b.build()?;
        let clamped: Vec<usize> = (0..count)
            .filter(|&v| v % nx == 0)
            .flat_map(|v| [3 * v, 3 * v + 1, 3 * v + 2])
            .collect();
        let dirichlet = Dirichlet::new(&assembly, &clamped)?;
        let load_node = id(nx - 1, ny / 2, nz / 2);
        let mut force = DMatrix::zeros(n_dof, 1);
        force[3 * load_node + 2] = -1.0;
        let total: f64 = lengths.iter().sum();
        let share_scale = DMatrix::from_iterator(
            lengths.len(),
            1,
            lengths.iter().map(|l| (1.0 - k_min) * total / l),
        );
        Ok(Cantilever3d {
            nx,
            ny,
            nz,
            nodes,
            springs,
            lengths,
            load_node,
            k_min,
            dirichlet,
            force,
            share_scale,
        })
    }

    /// The design φ of the uniform design k = 1: φ_e = ln ℓ_e.
    pub fn uniform_design(&self) -> Vec<f64> {
        self.lengths.iter().map(|l| l.ln()).collect()
    }

    /// Total material Σ k_e ℓ_e.
    pub fn material(&self, k: &[f64]) -> f64 {
        k.iter().zip(&self.lengths).map(|(k, l)| k * l).sum()
    }

    /// k(φ) = k_min + softmax(φ) ⊙ c on the tape.
    pub fn stiffness<'t>(&self, phi: Var<'t>) -> Var<'t> {
        phi.softmax() * phi.tape().constant(&self.share_scale) + self.k_min
    }

    /// The full displacement vector u (3·nodes × 1), clamped unknowns zero.
    ///
    /// # Errors
    /// Errors of the solve.
    pub fn displacement<'t>(&self, k: Var<'t>) -> Result<Var<'t>> {
        let f = k.tape().constant(&self.force);
        self.dirichlet.solve_homogeneous(k, f, &Solver::cholesky())
    }

    /// Compliance fᵀu.
    ///
    /// # Errors
    /// As [`Cantilever3d::displacement`].
    pub fn compliance<'t>(&self, k: Var<'t>) -> Result<Var<'t>> {
        let u = self.displacement(k)?;
        Ok(u.dot(k.tape().constant(&self.force)))
    }

    /// The compliance of a stiffness vector (no gradient).
    ///
    /// # Errors
    /// As [`Cantilever3d::displacement`].
    pub fn compliance_of(&self, k: &[f64]) -> Result<f64> {
        let tape = Tape::new();
        self.compliance(tape.constant(k))?.scalar()
    }

    /// The lattice as a VTK unstructured grid (`.vtu`, ASCII XML, opens in ParaView): nodes as
    /// points with their `displacement` (3 per node, `u`), springs as line cells with their
    /// `stiffness` (`k`).
    pub fn to_vtu(&self, k: &[f64], u: &[f64]) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<?xml version=\"1.0\"?>\n<VTKFile type=\"UnstructuredGrid\" version=\"0.1\" byte_order=\"LittleEndian\">\n<UnstructuredGrid>\n<Piece NumberOfPoints=\"{}\" NumberOfCells=\"{}\">",
            self.nodes.len(),
            self.springs.len()
        );
        s.push_str(
            "<Points>\n<DataArray type=\"Float64\" NumberOfComponents=\"3\" format=\"ascii\">\n",
        );
        for p in &self.nodes {
            let _ = writeln!(s, "{} {} {}", p[0], p[1], p[2]);
        }
        s.push_str("</DataArray>\n</Points>\n<Cells>\n<DataArray type=\"Int64\" Name=\"connectivity\" format=\"ascii\">\n");
        for &(a, b) in &self.springs {
            let _ = writeln!(s, "{a} {b}");
        }
        s.push_str("</DataArray>\n<DataArray type=\"Int64\" Name=\"offsets\" format=\"ascii\">\n");
        for e in 0..self.springs.len() {
            let _ = writeln!(s, "{}", 2 * (e + 1));
        }
        s.push_str("</DataArray>\n<DataArray type=\"UInt8\" Name=\"types\" format=\"ascii\">\n");
        for _ in &self.springs {
            s.push_str("3\n"); // VTK_LINE
        }
        s.push_str("</DataArray>\n</Cells>\n<PointData Vectors=\"displacement\">\n<DataArray type=\"Float64\" Name=\"displacement\" NumberOfComponents=\"3\" format=\"ascii\">\n");
        for c in u.chunks(3) {
            let _ = writeln!(s, "{:e} {:e} {:e}", c[0], c[1], c[2]);
        }
        s.push_str("</DataArray>\n</PointData>\n<CellData Scalars=\"stiffness\">\n<DataArray type=\"Float64\" Name=\"stiffness\" format=\"ascii\">\n");
        for v in k {
            let _ = writeln!(s, "{v:e}");
        }
        s.push_str("</DataArray>\n</CellData>\n</Piece>\n</UnstructuredGrid>\n</VTKFile>\n");
        s
    }
}

/// Minimize the compliance fᵀu of the 3D lattice over the design φ.
#[derive(Debug, Clone)]
pub struct Compliance3d(pub Arc<Cantilever3d>);

impl Objective for Compliance3d {
    fn loss<'t>(&self, _tape: &'t Tape, phi: Var<'t>) -> Result<Var<'t>> {
        self.0.compliance(self.0.stiffness(phi))
    }
}
