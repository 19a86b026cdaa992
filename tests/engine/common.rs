//! Problem generators and dense references shared by the engine tests.

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::problems::graph::{grid3_edges, grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Factorizer, Result, Symmetry, Tape, Var};

/// A = shift·I + L(w) on a 2D (k × k) or 3D (k³) grid, lower triangle stored.
pub fn grid(k: usize, three_d: bool, shift: f64) -> Assembly {
    let (n, edges) = if three_d {
        (k * k * k, grid3_edges(k).unwrap())
    } else {
        (k * k, grid_edges(k).unwrap())
    };
    laplacian_assembly(n, &edges, shift).unwrap()
}

/// A parameterized sparse system A(θ) X = B with a loss L = Σ W ⊙ X + ½ Σ X².
///
/// The test keeps its own list of terms, so the dense reference below does not depend on the
/// library's assembly code.
pub struct Problem {
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub symmetry: Symmetry,
    pub terms: Vec<(usize, usize, usize, f64)>,
    pub constants: Vec<(usize, usize, f64)>,
    pub theta: Vec<f64>,
    pub b: DMatrix<f64>,
    pub w: DMatrix<f64>,
}

/// SPD: D + L(w) of a random graph, with per-edge and per-node parameters.
pub fn spd(n: usize, k: usize, symmetry: Symmetry, seed: u64) -> Problem {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut edges = Vec::new();
    for i in 1..n {
        edges.push((i, rng.random_range(0..i))); // a spanning tree keeps it connected
    }
    for _ in 0..n {
        let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
        if i != j {
            edges.push((i.max(j), i.min(j)));
        }
    }
    let m = edges.len() + n;
    let mut terms = Vec::new();
    for (e, &(i, j)) in edges.iter().enumerate() {
        terms.push((i, i, e, 1.0));
        terms.push((j, j, e, 1.0));
        terms.push((i, j, e, -1.0));
        if symmetry == Symmetry::Full {
            terms.push((j, i, e, -1.0));
        }
    }
    for i in 0..n {
        terms.push((i, i, edges.len() + i, 0.5));
    }
    let constants = (0..n).map(|i| (i, i, 1.0)).collect();
    let theta = (0..m).map(|_| rng.random_range(0.5..1.5)).collect();
    finish(n, k, m, symmetry, terms, constants, theta, &mut rng)
}

/// Non-symmetric, diagonally dominant, one parameter per off-diagonal entry and per diagonal.
pub fn general(n: usize, k: usize, seed: u64) -> Problem {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut terms = Vec::new();
    let mut m = 0;
    for _ in 0..3 * n {
        let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
        if i != j {
            terms.push((i, j, m, rng.random_range(-1.0..1.0)));
            m += 1;
        }
    }
    for i in 0..n {
        terms.push((i, i, m, 1.0));
        m += 1;
    }
    let constants = (0..n).map(|i| (i, i, 4.0)).collect();
    let theta = (0..m).map(|_| rng.random_range(0.5..1.5)).collect();
    finish(
        n,
        k,
        m,
        Symmetry::General,
        terms,
        constants,
        theta,
        &mut rng,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    n: usize,
    k: usize,
    m: usize,
    symmetry: Symmetry,
    terms: Vec<(usize, usize, usize, f64)>,
    constants: Vec<(usize, usize, f64)>,
    theta: Vec<f64>,
    rng: &mut StdRng,
) -> Problem {
    let b = DMatrix::from_fn(n, k, |_, _| rng.random_range(-1.0..1.0));
    let w = DMatrix::from_fn(n, k, |_, _| rng.random_range(-1.0..1.0));
    Problem {
        n,
        k,
        m,
        symmetry,
        terms,
        constants,
        theta,
        b,
        w,
    }
}

impl Problem {
    pub fn assembly(&self) -> Assembly {
        let mut b = Assembly::builder(self.n, self.n, self.m).symmetry(self.symmetry);
        for &(i, j, q, c) in &self.terms {
            b.push_entry(i, j, q, c);
        }
        for &(i, j, v) in &self.constants {
            b.push_constant(i, j, v);
        }
        b.build().expect("valid test problem")
    }

    /// x0 = [θ; vec(B)] — the tests differentiate with respect to both.
    pub fn x0(&self) -> DMatrix<f64> {
        let mut v = self.theta.clone();
        v.extend_from_slice(self.b.as_slice());
        DMatrix::from_vec(v.len(), 1, v)
    }

    /// L(θ, B) on the tape, with x = [θ; vec(B)].
    pub fn loss<'t>(
        &self,
        asm: &Assembly,
        solver: &dyn Factorizer,
        tape: &'t Tape,
        x: Var<'t>,
    ) -> Result<Var<'t>> {
        let sol = self.solution(asm, solver, tape, x)?;
        let w = tape.constant(self.w.clone());
        Ok(sol.dot(w) + sol.square().sum() * 0.5)
    }

    /// X = A(θ)⁻¹ B on the tape, with x = [θ; vec(B)].
    pub fn solution<'t>(
        &self,
        asm: &Assembly,
        solver: &dyn Factorizer,
        tape: &'t Tape,
        x: Var<'t>,
    ) -> Result<Var<'t>> {
        let theta = x.gather(&(0..self.m).collect::<Vec<_>>());
        let cols: Vec<Var<'t>> = (0..self.k)
            .map(|c| {
                x.gather(&(self.m + c * self.n..self.m + (c + 1) * self.n).collect::<Vec<_>>())
            })
            .collect();
        let b = tape.concat_columns(&cols);
        let a = tape.assemble(asm, theta)?;
        tape.solve(a, b, solver)
    }

    /// X = A(θ)⁻¹ B at the problem's own θ and B (no gradient), with `solver`.
    pub fn solve_at_theta(&self, solver: &dyn Factorizer) -> Result<DMatrix<f64>> {
        let asm = self.assembly();
        let tape = Tape::new();
        let a = tape.assemble(
            &asm,
            tape.constant(DMatrix::from_vec(self.m, 1, self.theta.clone())),
        )?;
        tape.solve(a, tape.constant(self.b.clone()), solver)?
            .value()
    }

    /// Dense A(θ) (mirroring one-triangle entries).
    pub fn dense(&self, theta: &[f64]) -> DMatrix<f64> {
        let mut a = DMatrix::zeros(self.n, self.n);
        for &(i, j, v) in &self.constants {
            a[(i, j)] += v;
        }
        for &(i, j, q, c) in &self.terms {
            a[(i, j)] += c * theta[q];
            if self.symmetry == Symmetry::Lower && i != j {
                a[(j, i)] += c * theta[q];
            }
        }
        a
    }

    /// The dense reference gradient [θ̄; vec(B̄)] by the textbook adjoint with dense LU.
    pub fn dense_gradient(&self) -> DMatrix<f64> {
        let a = self.dense(&self.theta);
        let lu = a.clone().lu();
        let x = lu.solve(&self.b).expect("nonsingular");
        let g = &self.w + &x; // ∂L/∂X
        let lambda = a.transpose().lu().solve(&g).expect("nonsingular");
        let a_bar = -&lambda * x.transpose(); // ∂L/∂A, dense
        let mut grad = vec![0.0; self.m];
        for &(i, j, q, c) in &self.terms {
            grad[q] += c * a_bar[(i, j)];
            if self.symmetry == Symmetry::Lower && i != j {
                grad[q] += c * a_bar[(j, i)];
            }
        }
        grad.extend_from_slice(lambda.as_slice());
        DMatrix::from_vec(grad.len(), 1, grad)
    }
}

/// ‖a − b‖∞ / ‖b‖∞.
pub fn rel_inf(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).amax() / b.amax()
}
