//! Triangle meshes of planar domains and their P1 finite-element operators.
//!
//! The anisotropic stiffness K(D) = Σ_t |t| Gₜᵀ Dₜ Gₜ (Gₜ the 2×3 matrix of the barycentric
//! gradients of triangle t, Dₜ = [[d11, d12], [d12, d22]] its diffusivity) is linear in the entries
//! of every Dₜ, so it is an [`Assembly`] whose parameter vector is [d11 (T); d12 (T); d22 (T)].
//! With Dₜ = I it is the cotangent Laplacian.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sparse::{Assembly, Structure, Symmetry};

/// A triangle mesh: vertex positions and counter-clockwise triangles.
#[derive(Debug, Clone, PartialEq)]
pub struct TriMesh {
    /// Vertex positions.
    pub vertices: Vec<[f64; 2]>,
    /// Triangles as vertex triples (counter-clockwise).
    pub triangles: Vec<[usize; 3]>,
    /// For meshes built from an n × n grid: the vertex at grid point (i, j) = `grid[j · n + i]`.
    pub grid: Vec<Option<usize>>,
    /// Grid points per side (0 for meshes not built from a grid).
    pub grid_size: usize,
}

impl TriMesh {
    /// The unit square with n × n vertices (vertex id j · n + i at (i, j)/(n − 1)), each cell
    /// split into two triangles along its (i, j)–(i+1, j+1) diagonal.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for n < 2.
    pub fn unit_square(n: usize) -> Result<Self> {
        Self::grid_domain(n, |_, _| true)
    }

    /// The L-shaped domain: the unit square without its upper-right quarter (cells with
    /// i ≥ (n − 1)/2 and j ≥ (n − 1)/2 removed); vertices are renumbered.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for n < 3.
    pub fn l_shape(n: usize) -> Result<Self> {
        if n < 3 {
            return Err(Error::InvalidArgument {
                what: "mesh size",
                reason: format!("an L-shaped mesh needs n ≥ 3, got {n}"),
            });
        }
        let half = (n - 1) / 2;
        Self::grid_domain(n, |i, j| i < half || j < half)
    }

    fn grid_domain(n: usize, keep_cell: impl Fn(usize, usize) -> bool) -> Result<Self> {
        if n < 2 {
            return Err(Error::InvalidArgument {
                what: "mesh size",
                reason: format!("a grid mesh needs n ≥ 2, got {n}"),
            });
        }
        let cells =
            n.checked_mul(n)
                .filter(|&c| c <= 1 << 32)
                .ok_or_else(|| Error::OutOfMemory {
                    what: format!("an {n} × {n} grid mesh"),
                    reason: "more than 2³² grid points".into(),
                })?;
        let h = 1.0 / (n - 1) as f64;
        let mut grid = vec![None; cells];
        let mut vertices = Vec::new();
        let mut triangles = Vec::new();
        let mut vertex = |i: usize, j: usize, vertices: &mut Vec<[f64; 2]>| {
            *grid[j * n + i].get_or_insert_with(|| {
                vertices.push([i as f64 * h, j as f64 * h]);
                vertices.len() - 1
            })
        };
        for j in 0..n - 1 {
            for i in 0..n - 1 {
                if !keep_cell(i, j) {
                    continue;
                }
                let v00 = vertex(i, j, &mut vertices);
                let v10 = vertex(i + 1, j, &mut vertices);
                let v11 = vertex(i + 1, j + 1, &mut vertices);
                let v01 = vertex(i, j + 1, &mut vertices);
                triangles.push([v00, v10, v11]);
                triangles.push([v00, v11, v01]);
            }
        }
        // Renumber so that a full square keeps the documented id j · n + i.
        let mut order: Vec<usize> = (0..n * n).filter_map(|g| grid[g]).collect();
        let mut new_id = vec![0usize; vertices.len()];
        for (k, &old) in order.iter().enumerate() {
            new_id[old] = k;
        }
        let vertices = order.iter().map(|&old| vertices[old]).collect();
        order.clear();
        let triangles = triangles.iter().map(|t| t.map(|v| new_id[v])).collect();
        let grid = grid.iter().map(|g| g.map(|v| new_id[v])).collect();
        Ok(TriMesh {
            vertices,
            triangles,
            grid,
            grid_size: n,
        })
    }

    /// The vertex at grid point (i, j), if the mesh has it.
    pub fn grid_vertex(&self, i: usize, j: usize) -> Option<usize> {
        if i >= self.grid_size || j >= self.grid_size {
            return None;
        }
        self.grid[j * self.grid_size + i]
    }

    /// Area and barycentric gradients ∇φ_a (a = 0, 1, 2) of triangle `t`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for `t ≥` the number of triangles or a triangle naming a vertex
    /// that does not exist.
    pub fn triangle_geometry(&self, t: usize) -> Result<(f64, [[f64; 2]; 3])> {
        let tri = *self.triangles.get(t).ok_or(Error::IndexOutOfRange {
            context: "TriMesh::triangle_geometry",
            entry: 0,
            what: "triangle",
            index: t,
            bound: self.triangles.len(),
        })?;
        let vertex = |v: usize| {
            self.vertices.get(v).copied().ok_or(Error::IndexOutOfRange {
                context: "TriMesh triangle",
                entry: t,
                what: "vertex",
                index: v,
                bound: self.vertices.len(),
            })
        };
        let (a, b, c) = (vertex(tri[0])?, vertex(tri[1])?, vertex(tri[2])?);
        let twice_area = (b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1]);
        // ∇φ_a = perp(edge opposite a) / (2·area), rotated so that it points towards a.
        let grad =
            |p: [f64; 2], q: [f64; 2]| [(p[1] - q[1]) / twice_area, (q[0] - p[0]) / twice_area];
        Ok((0.5 * twice_area, [grad(b, c), grad(c, a), grad(a, b)]))
    }

    /// Triangle areas.
    ///
    /// # Errors
    /// As [`TriMesh::triangle_geometry`].
    pub fn areas(&self) -> Result<Vec<f64>> {
        (0..self.triangles.len())
            .map(|t| Ok(self.triangle_geometry(t)?.0))
            .collect()
    }

    /// Lumped mass: a third of the area of every incident triangle.
    ///
    /// # Errors
    /// As [`TriMesh::triangle_geometry`].
    pub fn lumped_mass(&self) -> Result<Vec<f64>> {
        let mut m = vec![0.0; self.vertices.len()];
        for (t, tri) in self.triangles.iter().enumerate() {
            let a = self.triangle_geometry(t)?.0;
            for &v in tri {
                m[v] += a / 3.0;
            }
        }
        Ok(m)
    }

    /// K(D) as an assembly over [d11 (T); d12 (T); d22 (T)], lower triangle stored:
    /// K_ab += |t| (∂ₓφ_a ∂ₓφ_b d11 + (∂ₓφ_a ∂ᵧφ_b + ∂ᵧφ_a ∂ₓφ_b) d12 + ∂ᵧφ_a ∂ᵧφ_b d22).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a degenerate (zero-area or clockwise) triangle.
    pub fn anisotropic_stiffness(&self) -> Result<Assembly> {
        let (n, nt) = (self.vertices.len(), self.triangles.len());
        let mut b = Assembly::builder(n, n, 3 * nt).symmetry(Symmetry::Lower);
        for (t, tri) in self.triangles.iter().enumerate() {
            let (area, g) = self.triangle_geometry(t)?;
            if area <= 0.0 || !area.is_finite() {
                return Err(Error::InvalidArgument {
                    what: "mesh triangle",
                    reason: format!("triangle {t} has area {area:e}"),
                });
            }
            for a in 0..3 {
                for c in 0..3 {
                    let (va, vc) = (tri[a], tri[c]);
                    if va < vc {
                        continue; // the (vc, va) pass adds this lower-triangle entry
                    }
                    b.push_entry(va, vc, t, area * g[a][0] * g[c][0]);
                    b.push_entry(
                        va,
                        vc,
                        nt + t,
                        area * (g[a][0] * g[c][1] + g[a][1] * g[c][0]),
                    );
                    b.push_entry(va, vc, 2 * nt + t, area * g[a][1] * g[c][1]);
                }
            }
        }
        b.build()
    }

    /// The cotangent Laplacian (K with D = I) as stored values on the stiffness pattern.
    ///
    /// # Errors
    /// As [`TriMesh::anisotropic_stiffness`].
    pub fn cotangent_laplacian(&self) -> Result<(Arc<Structure>, Vec<f64>)> {
        let asm = self.anisotropic_stiffness()?;
        let nt = self.triangles.len();
        let identity: Vec<f64> = (0..3 * nt)
            .map(|q| if q < nt || q >= 2 * nt { 1.0 } else { 0.0 })
            .collect();
        Ok((asm.structure().clone(), asm.values(&identity)?))
    }
}
