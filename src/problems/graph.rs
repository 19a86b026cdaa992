//! Graphs and the systems A(w) = I + L(w) built on them, where L(w) = Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ
//! is the weighted Laplacian: one parameter per edge, lower triangle stored.

use rand::Rng;

use crate::error::Result;
use crate::sparse::{Assembly, Symmetry};

/// `count` random pairs in [0, n)², as the seed's `unique(randint(0, n, (count, 2)))`, with
/// self-loops and duplicates (in either orientation) removed; each edge as (larger, smaller).
pub fn random_edges(n: usize, count: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (0..count)
        .map(|_| (rng.random_range(0..n), rng.random_range(0..n)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| (i.max(j), i.min(j)))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// The cyclic chain of the seed benchmark: edge i joins i and (i + 1) mod n.
pub fn chain_edges(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .map(|i| (i, (i + 1) % n))
        .map(|(i, j)| (i.max(j), i.min(j)))
        .collect()
}

/// The 4-neighbour k×k grid (node id = row · k + column): all horizontal edges (r, c)–(r, c+1)
/// row by row, then all vertical edges (r, c)–(r+1, c) row by row — the peers' order, so θ_e
/// means the same edge everywhere. 2k(k − 1) edges.
pub fn grid_edges(k: usize) -> Vec<(usize, usize)> {
    let mut edges = Vec::with_capacity(2 * k * k.saturating_sub(1));
    for r in 0..k {
        for c in 0..k.saturating_sub(1) {
            edges.push((r * k + c + 1, r * k + c));
        }
    }
    for r in 0..k.saturating_sub(1) {
        for c in 0..k {
            edges.push(((r + 1) * k + c, r * k + c));
        }
    }
    edges
}

/// A(w) = shift · I + L(w) with one parameter per edge, lower triangle stored.
///
/// # Errors
/// [`crate::Error::IndexOutOfRange`] for an edge endpoint ≥ n.
pub fn laplacian_assembly(n: usize, edges: &[(usize, usize)], shift: f64) -> Result<Assembly> {
    let mut b = Assembly::builder(n, n, edges.len()).symmetry(Symmetry::Lower);
    for i in 0..n {
        b.push_constant(i, i, shift);
    }
    for (e, &(i, j)) in edges.iter().enumerate() {
        b.push_entry(i, i, e, 1.0);
        b.push_entry(j, j, e, 1.0);
        if i != j {
            b.push_entry(i.max(j), i.min(j), e, -1.0);
        }
    }
    b.build()
}

/// A standard normal sample (Box–Muller), for reproducible instances without extra crates.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
