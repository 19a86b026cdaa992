//! 3D linear elasticity on a block of unit trilinear hexahedra (Q1 "hex8" elements, 3 unknowns
//! per node), clamped on the x = 0 face: K(θ) = Σ_e θ_e K̂ with K̂ the stiffness of a unit cube
//! of Young's modulus 1 and Poisson ratio ν (2×2×2 Gauss quadrature, exact for this element).
//!
//! This is the 3D elasticity benchmark case (`seed_benchmark --case elastic3`); the Python peers
//! (benches/compare/peer_bench.py) build the same matrix with the same numbering, so losses agree.
//!
//! Numbering: nodes (x, y, z) with 0 ≤ x ≤ nx, 0 ≤ y ≤ ny, 0 ≤ z ≤ nz; the nodes with x = 0 are
//! clamped and carry no unknowns; free node f(x, y, z) = (x − 1) + nx·(y + (ny + 1)·z), unknown
//! 3·f + c for the displacement component c. Element (ex, ey, ez) is parameter
//! ex + nx·(ey + ny·ez); its local corner i = dx + 2·dy + 4·dz is node (ex + dx, ey + dy, ez + dz).

use nalgebra::{DMatrix, SMatrix};

use crate::error::{Error, Result};
use crate::sparse::{Assembly, Symmetry};

/// The 24 × 24 stiffness of the unit cube [0, 1]³ with Young's modulus 1 and Poisson ratio `nu`;
/// unknowns ordered corner-major (3·i + c), corners i = dx + 2·dy + 4·dz.
///
/// ```
/// let k = sparsegrad::problems::elasticity::hex8_stiffness(0.3);
/// // Rigid translations carry no energy: every row sums to zero over each component.
/// let row_sum: f64 = (0..8).map(|i| k[(0, 3 * i)]).sum();
/// assert!(row_sum.abs() < 1e-12);
/// assert!((k[(0, 0)] - k[(3, 3)]).abs() < 1e-12);
/// ```
pub fn hex8_stiffness(nu: f64) -> DMatrix<f64> {
    // Isotropic elasticity in Voigt notation (xx, yy, zz, yz, xz, xy), E = 1.
    let lam = nu / ((1.0 + nu) * (1.0 - 2.0 * nu));
    let mu = 1.0 / (2.0 * (1.0 + nu));
    let mut d = SMatrix::<f64, 6, 6>::zeros();
    for i in 0..3 {
        for j in 0..3 {
            d[(i, j)] = lam;
        }
        d[(i, i)] = lam + 2.0 * mu;
        d[(i + 3, i + 3)] = mu;
    }
    let g = 0.5 / 3f64.sqrt();
    let mut k = SMatrix::<f64, 24, 24>::zeros();
    for &gz in &[0.5 - g, 0.5 + g] {
        for &gy in &[0.5 - g, 0.5 + g] {
            for &gx in &[0.5 - g, 0.5 + g] {
                // Shape function N_i = ∏ (d ? t : 1 − t) on the unit cube, its gradient per corner.
                let mut b = SMatrix::<f64, 6, 24>::zeros();
                for i in 0..8 {
                    let (dx, dy, dz) = (i & 1, (i >> 1) & 1, (i >> 2) & 1);
                    let f = |t: f64, on: usize| if on == 1 { t } else { 1.0 - t };
                    let s = |on: usize| if on == 1 { 1.0 } else { -1.0 };
                    let nx = s(dx) * f(gy, dy) * f(gz, dz);
                    let ny = f(gx, dx) * s(dy) * f(gz, dz);
                    let nz = f(gx, dx) * f(gy, dy) * s(dz);
                    let c = 3 * i;
                    b[(0, c)] = nx;
                    b[(1, c + 1)] = ny;
                    b[(2, c + 2)] = nz;
                    b[(3, c + 1)] = nz;
                    b[(3, c + 2)] = ny;
                    b[(4, c)] = nz;
                    b[(4, c + 2)] = nx;
                    b[(5, c)] = ny;
                    b[(5, c + 1)] = nx;
                }
                // Weight 1/8 per point (the cube's volume split over 8 points).
                k += b.transpose() * d * b * 0.125;
            }
        }
    }
    // Exact symmetry (the products above are symmetric only to rounding).
    let k = (k + k.transpose()) * 0.5;
    DMatrix::from_column_slice(24, 24, k.as_slice())
}

/// A block of `nx × ny × nz` unit hexahedra clamped on its x = 0 face (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElasticBlock {
    /// Elements along x (the clamped face is x = 0).
    pub nx: usize,
    /// Elements along y.
    pub ny: usize,
    /// Elements along z.
    pub nz: usize,
}

impl ElasticBlock {
    /// The block of `k × k × k` elements.
    pub fn cube(k: usize) -> Self {
        Self {
            nx: k,
            ny: k,
            nz: k,
        }
    }

    /// Number of elements (= parameters; saturating).
    pub fn n_elements(&self) -> usize {
        self.nx.saturating_mul(self.ny).saturating_mul(self.nz)
    }

    /// Number of unknowns, 3·nx·(ny + 1)·(nz + 1) (saturating).
    pub fn n_unknowns(&self) -> usize {
        3usize
            .saturating_mul(self.nx)
            .saturating_mul(self.ny.saturating_add(1))
            .saturating_mul(self.nz.saturating_add(1))
    }

    /// The unknown of displacement component `c` at node (x, y, z); `None` on the clamped face.
    pub fn dof(&self, x: usize, y: usize, z: usize, c: usize) -> Option<usize> {
        (x > 0).then(|| 3 * ((x - 1) + self.nx * (y + (self.ny + 1) * z)) + c)
    }

    /// K(θ) = Σ_e θ_e K̂ over the free unknowns, lower triangle stored ([`Symmetry::Lower`]), one
    /// parameter per element.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty block or ν outside (−1, 0.5);
    /// [`Error::OutOfMemory`] when the unknowns overflow.
    pub fn assembly(&self, nu: f64) -> Result<Assembly> {
        if self.nx == 0 || self.ny == 0 || self.nz == 0 || !(nu > -1.0 && nu < 0.5) {
            return Err(Error::InvalidArgument {
                what: "elastic block",
                reason: format!(
                    "needs at least one element per side and −1 < ν < 0.5, got {} × {} × {}, ν = {nu}",
                    self.nx, self.ny, self.nz
                ),
            });
        }
        let n = 3usize
            .checked_mul(self.nx)
            .and_then(|v| v.checked_mul(self.ny + 1))
            .and_then(|v| v.checked_mul(self.nz + 1))
            .filter(|&v| v <= u32::MAX as usize)
            .ok_or_else(|| Error::OutOfMemory {
                what: format!("{} × {} × {} elastic block", self.nx, self.ny, self.nz),
                reason: "more than 2³² unknowns".into(),
            })?;
        let ke = hex8_stiffness(nu);
        let mut builder = Assembly::builder(n, n, self.n_elements()).symmetry(Symmetry::Lower);
        // At most 24·25/2 lower-triangle terms per hexahedron.
        builder.reserve(self.n_elements().saturating_mul(300))?;
        let mut dofs = [None; 24];
        for ez in 0..self.nz {
            for ey in 0..self.ny {
                for ex in 0..self.nx {
                    let e = ex + self.nx * (ey + self.ny * ez);
                    for (i, corner) in dofs.chunks_mut(3).enumerate() {
                        let (x, y, z) = (ex + (i & 1), ey + ((i >> 1) & 1), ez + ((i >> 2) & 1));
                        for (c, d) in corner.iter_mut().enumerate() {
                            *d = self.dof(x, y, z, c);
                        }
                    }
                    for (a, ra) in dofs.iter().enumerate() {
                        let Some(r) = *ra else { continue };
                        for (b, cb) in dofs.iter().enumerate() {
                            match *cb {
                                Some(c) if c <= r => builder.push_entry(r, c, e, ke[(a, b)]),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DVector;

    #[test]
    fn hex8_has_the_six_rigid_modes_and_the_known_energy() {
        let k = hex8_stiffness(0.3);
        let corner = |i: usize| [(i & 1) as f64, ((i >> 1) & 1) as f64, ((i >> 2) & 1) as f64];
        // Translations and infinitesimal rotations u = ω × p are in the null space.
        let mut modes = vec![];
        for c in 0..3 {
            modes.push(DVector::from_fn(24, |r, _| f64::from(u8::from(r % 3 == c))));
        }
        for axis in 0..3 {
            modes.push(DVector::from_fn(24, |r, _| {
                let p = corner(r / 3);
                let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
                // ω = e_axis: u_a = −p_b, u_b = p_a.
                if r % 3 == a {
                    -p[b]
                } else if r % 3 == b {
                    p[a]
                } else {
                    0.0
                }
            }));
        }
        for m in &modes {
            assert!((&k * m).amax() < 1e-12, "rigid mode not in the null space");
        }
        // Uniaxial stretch u_x = ε·x: energy ½ uᵀKu = ½ · (λ + 2μ) · ε² · volume (lateral
        // displacement held at zero).
        let nu = 0.3;
        let lam = nu / ((1.0 + nu) * (1.0 - 2.0 * nu));
        let mu = 1.0 / (2.0 * (1.0 + nu));
        let u = DVector::from_fn(24, |r, _| if r % 3 == 0 { corner(r / 3)[0] } else { 0.0 });
        let energy = 0.5 * u.dot(&(&k * &u));
        assert!((energy - 0.5 * (lam + 2.0 * mu)).abs() < 1e-12, "{energy}");
        // Positive semidefinite with exactly six zero eigenvalues.
        let eig = k.symmetric_eigenvalues();
        assert_eq!(eig.iter().filter(|&&v| v.abs() < 1e-10).count(), 6);
        assert!(eig.iter().all(|&v| v > -1e-12));
    }

    #[test]
    fn clamped_block_matches_a_dense_assembly_and_is_positive_definite() {
        let block = ElasticBlock {
            nx: 2,
            ny: 1,
            nz: 2,
        };
        let n = block.n_unknowns();
        assert_eq!(n, 3 * 2 * 2 * 3);
        let theta: Vec<f64> = (0..block.n_elements())
            .map(|e| 1.5 + 0.5 * (e as f64).sin())
            .collect();
        let a = DMatrix::from(&block.assembly(0.3).unwrap().to_csc_full(&theta).unwrap());
        // Dense reference: scatter every element into the full (unclamped) matrix, then drop the
        // clamped rows and columns.
        let nodes = (block.nx + 1) * (block.ny + 1) * (block.nz + 1);
        let node = |x: usize, y: usize, z: usize| x + (block.nx + 1) * (y + (block.ny + 1) * z);
        let mut full = DMatrix::zeros(3 * nodes, 3 * nodes);
        let ke = hex8_stiffness(0.3);
        let mut map = vec![None; 3 * nodes];
        for z in 0..=block.nz {
            for y in 0..=block.ny {
                for x in 0..=block.nx {
                    for c in 0..3 {
                        map[3 * node(x, y, z) + c] = block.dof(x, y, z, c);
                    }
                }
            }
        }
        for ez in 0..block.nz {
            for ey in 0..block.ny {
                for ex in 0..block.nx {
                    let e = ex + block.nx * (ey + block.ny * ez);
                    let g: Vec<usize> = (0..24)
                        .map(|r| {
                            let i = r / 3;
                            3 * node(ex + (i & 1), ey + ((i >> 1) & 1), ez + ((i >> 2) & 1)) + r % 3
                        })
                        .collect();
                    for a in 0..24 {
                        for b in 0..24 {
                            full[(g[a], g[b])] += theta[e] * ke[(a, b)];
                        }
                    }
                }
            }
        }
        let mut reference = DMatrix::zeros(n, n);
        for i in 0..3 * nodes {
            for j in 0..3 * nodes {
                if let (Some(r), Some(c)) = (map[i], map[j]) {
                    reference[(r, c)] = full[(i, j)];
                }
            }
        }
        assert!((&a - &reference).amax() < 1e-14);
        assert!(a.clone().cholesky().is_some(), "clamped block must be SPD");
    }

    #[test]
    fn every_ordering_solves_the_block_like_a_dense_solve() {
        use crate::{Ordering, Solver};
        // 3 unknowns per node: the orderings run on the supervariable graph.
        let block = ElasticBlock {
            nx: 4,
            ny: 3,
            nz: 3,
        };
        let asm = block.assembly(0.3).unwrap();
        let theta: Vec<f64> = (0..block.n_elements())
            .map(|e| 1.5 + 0.5 * (e as f64).sin())
            .collect();
        let values = asm.values(&theta).unwrap();
        let dense = DMatrix::from(&asm.to_csc_full(&theta).unwrap());
        let b = DMatrix::from_fn(block.n_unknowns(), 2, |i, c| {
            1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos()
        });
        let reference = dense.clone().cholesky().unwrap().solve(&b);
        for ordering in [
            Ordering::Auto,
            Ordering::Amd,
            Ordering::NestedDissection,
            Ordering::Natural,
        ] {
            let f = Solver::cholesky()
                .with_ordering(ordering.clone())
                .factorize(asm.structure(), &values)
                .unwrap();
            let mut x = b.clone();
            f.solve_in_place(&mut x).unwrap();
            let err = (&x - &reference).amax() / reference.amax();
            assert!(err < 1e-12, "{ordering:?}: {err:e}");
        }
    }

    #[test]
    fn bad_blocks_are_errors() {
        assert!(ElasticBlock::cube(0).assembly(0.3).is_err());
        assert!(ElasticBlock::cube(2).assembly(0.5).is_err());
        assert!(ElasticBlock::cube(1 << 22).assembly(0.3).is_err());
    }
}
