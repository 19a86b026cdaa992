//! A Gaussian Markov random field on a k × k grid whose precision has per-region conductances:
//! Q(θ) = L(w(θ)) + τ(θ)·I, w_e = exp(θ_r) for an edge in region r (the grid's four quadrants by
//! the edge's first node), τ = exp(θ_4). Samples drawn from the true field with the kept factor
//! ([`Factorization::sample_in_place`](crate::Factorization::sample_in_place)) are fitted by
//! maximum likelihood: the negative log-likelihood per sample and node (n = k², the 1/n keeps
//! the gradient O(1) at any size, so a line search's first step stays in range)
//!
//! ```text
//!   ℓ(θ) = (½ tr(Xᵀ Q X) / S − ½ log det Q) / n
//! ```
//!
//! is a tape of `gather`, `assemble`, `spmul`, `dot` and `logdet`, so its gradient comes from the
//! solve-free quadratic term and the selected inverse of Q (no solve, no dense inverse).

use std::sync::Arc;

use nalgebra::DMatrix;
use rand::Rng;

use crate::error::Result;
use crate::optim::Objective;
use crate::problems::graph::{grid_edges, standard_normal};
use crate::sparse::{Assembly, Symmetry};
use crate::tape::{Tape, Var};
use crate::Solver;

/// Number of parameters: four region conductances (log) and the nugget τ (log).
pub const PARAMS: usize = 5;

/// The field: the grid, its edges' regions and the precision's assembly (one parameter per edge
/// and one for τ, so Q = M p with p = [w_e…, τ]).
pub struct GaussianField {
    /// Grid side (k × k nodes).
    pub k: usize,
    /// The grid's edges (pairs of node indices).
    pub edges: Vec<(usize, usize)>,
    /// Region (0–3) of each edge.
    pub region: Vec<usize>,
    /// Q = M p, lower triangle stored.
    pub assembly: Arc<Assembly>,
}

impl GaussianField {
    /// The field on a k × k grid (k ≥ 2).
    ///
    /// # Errors
    /// From the grid and the assembly (k < 2, sizes that overflow).
    pub fn new(k: usize) -> Result<Self> {
        let edges = grid_edges(k)?;
        let n = k * k;
        let half = k.div_ceil(2);
        let region: Vec<usize> = edges
            .iter()
            .map(|&(i, _)| {
                let (r, c) = (i / k, i % k);
                usize::from(r >= half) * 2 + usize::from(c >= half)
            })
            .collect();
        let m = edges.len();
        let mut b = Assembly::builder(n, n, m + 1).symmetry(Symmetry::Lower);
        for (e, &(i, j)) in edges.iter().enumerate() {
            b = b
                .entry(i, i, e, 1.0)
                .entry(j, j, e, 1.0)
                .entry(i.max(j), i.min(j), e, -1.0);
        }
        for i in 0..n {
            b = b.entry(i, i, m, 1.0);
        }
        Ok(GaussianField {
            k,
            edges,
            region,
            assembly: Arc::new(b.build()?),
        })
    }

    /// The assembly parameters p = [exp θ_region(e)…, exp θ_4] of θ (on a tape).
    pub fn parameters<'t>(&self, theta: Var<'t>) -> Var<'t> {
        let index: Vec<usize> = self.region.iter().copied().chain([4]).collect();
        theta.exp().gather(&index)
    }

    /// The precision's stored values at θ (outside a tape).
    ///
    /// # Errors
    /// As [`Assembly::values`].
    pub fn precision_values(&self, theta: &[f64]) -> Result<Vec<f64>> {
        let p: Vec<f64> = self
            .region
            .iter()
            .map(|&r| theta[r].exp())
            .chain([theta[4].exp()])
            .collect();
        self.assembly.values(&p)
    }

    /// `samples` independent draws from N(0, Q(θ)⁻¹) as the columns of an n × samples matrix:
    /// standard normals through the kept Cholesky factor of Q.
    ///
    /// # Errors
    /// The factorization's errors.
    pub fn sample(
        &self,
        theta: &[f64],
        samples: usize,
        rng: &mut impl Rng,
    ) -> Result<DMatrix<f64>> {
        let n = self.k * self.k;
        let values = self.precision_values(theta)?;
        let factor = Solver::cholesky().factorize(self.assembly.structure(), &values)?;
        let mut x = DMatrix::from_fn(n, samples, |_, _| standard_normal(rng));
        factor.sample_in_place(&mut x)?;
        Ok(x)
    }

    /// The marginal variances diag(Q(θ)⁻¹), by selected inversion.
    ///
    /// # Errors
    /// The factorization's errors.
    pub fn variances(&self, theta: &[f64]) -> Result<Vec<f64>> {
        let values = self.precision_values(theta)?;
        Solver::cholesky()
            .factorize(self.assembly.structure(), &values)?
            .diag_inverse()
    }
}

/// The negative log-likelihood per sample and node of observed fields (the columns of
/// `samples`), (½ tr(Xᵀ Q X)/S − ½ log det Q)/n (constants dropped), as an [`Objective`] of θ.
pub struct Likelihood {
    /// The field model.
    pub field: Arc<GaussianField>,
    /// Observed fields, n × S.
    pub samples: DMatrix<f64>,
}

impl Objective for Likelihood {
    fn loss<'t>(&self, tape: &'t Tape, theta: Var<'t>) -> Result<Var<'t>> {
        let q = tape.assemble(&self.field.assembly, self.field.parameters(theta))?;
        let x = tape.constant(self.samples.clone());
        let quadratic = q.spmul(x)?.dot(x);
        let (n, s) = (self.samples.nrows() as f64, self.samples.ncols() as f64);
        Ok(quadratic * (0.5 / (s * n)) - q.logdet(&Solver::cholesky())? * (0.5 / n))
    }
}
