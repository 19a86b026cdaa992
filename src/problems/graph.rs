//! Graphs and the systems A(w) = I + L(w) built on them, where L(w) = Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ
//! is the weighted Laplacian: one parameter per edge, lower triangle stored.

use rand::Rng;

use crate::error::{Error, Result};
use crate::sparse::{counting_groups, Assembly, Structure, Symmetry, NO_GROUP};

/// `count` random pairs in [0, n)², as the seed's `unique(randint(0, n, (count, 2)))`, with
/// self-loops and duplicates (in either orientation) removed; each edge as (larger, smaller).
/// With n < 2 there is no edge to draw: the result is empty.
pub fn random_edges(n: usize, count: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
    if n < 2 {
        return Vec::new();
    }
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
///
/// # Errors
/// [`Error::OutOfMemory`] when n edges cannot be allocated.
pub fn chain_edges(n: usize) -> Result<Vec<(usize, usize)>> {
    crate::error::probe_alloc::<(usize, usize)>(n, || format!("the {n} edges of a chain"))?;
    Ok((0..n)
        .map(|i| (i, (i + 1) % n))
        .map(|(i, j)| (i.max(j), i.min(j)))
        .collect())
}

/// The 4-neighbour k×k grid (node id = row · k + column): all horizontal edges (r, c)–(r, c+1)
/// row by row, then all vertical edges (r, c)–(r+1, c) row by row — the peers' order, so θ_e
/// means the same edge everywhere. 2k(k − 1) edges, each given as **(larger id, smaller id)**
/// (the lower-triangle position of its off-diagonal entry): edge (r, c)–(r, c+1) is the pair
/// (r·k + c + 1, r·k + c), edge (r, c)–(r+1, c) the pair ((r+1)·k + c, r·k + c).
///
/// ```
/// let e = sparsegrad::problems::graph::grid_edges(3).unwrap();
/// assert_eq!(e.len(), 12);
/// assert_eq!(e[0], (1, 0)); // (0, 0)–(0, 1)
/// assert_eq!(e[6], (3, 0)); // (0, 0)–(1, 0), the first vertical edge
/// ```
///
/// # Errors
/// [`Error::OutOfMemory`] when k² node ids overflow or the edge list cannot be allocated.
pub fn grid_edges(k: usize) -> Result<Vec<(usize, usize)>> {
    let count = k.checked_mul(k).and_then(|kk| kk.checked_mul(2));
    let mut edges = edge_list(count, || format!("{k} × {k} grid"))?;
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
    Ok(edges)
}

/// An empty edge list with room for `count` edges (`None`: the count overflowed).
fn edge_list(count: Option<usize>, grid: impl Fn() -> String) -> Result<Vec<(usize, usize)>> {
    let count = count.ok_or_else(|| Error::OutOfMemory {
        what: format!("the edges of a {}", grid()),
        reason: "the node count overflows".into(),
    })?;
    let mut edges = Vec::new();
    edges
        .try_reserve_exact(count)
        .map_err(|_| Error::OutOfMemory {
            what: format!("the {count} edges of a {}", grid()),
            reason: "the allocation failed".into(),
        })?;
    Ok(edges)
}

/// The 6-neighbour k×k×k grid (node id = (z · k + y) · k + x): all x-edges, then all y-edges,
/// then all z-edges, each set in node order. 3k²(k − 1) edges, each given as (larger id,
/// smaller id), as in [`grid_edges`].
///
/// # Errors
/// [`Error::OutOfMemory`] when k³ node ids overflow or the edge list cannot be allocated.
pub fn grid3_edges(k: usize) -> Result<Vec<(usize, usize)>> {
    let count = k
        .checked_mul(k)
        .and_then(|kk| kk.checked_mul(k))
        .and_then(|kkk| kkk.checked_mul(3));
    let mut edges = edge_list(count, || format!("{k}³ grid"))?;
    let id = |x: usize, y: usize, z: usize| (z * k + y) * k + x;
    for (dx, dy, dz) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
        for z in 0..k {
            for y in 0..k {
                for x in 0..k {
                    if x + dx < k && y + dy < k && z + dz < k {
                        edges.push((id(x + dx, y + dy, z + dz), id(x, y, z)));
                    }
                }
            }
        }
    }
    Ok(edges)
}

/// A(w) = shift · I + L(w) with one parameter per edge, lower triangle stored.
///
/// Edges may come in either orientation and may repeat (each copy is its own parameter; copies
/// share one stored entry). A self-loop (i, i) contributes nothing — w (e_i − e_i)(e_i − e_i)ᵀ = 0 —
/// so its parameter gets a zero gradient.
///
/// Built directly in O(n + m) (two counting sorts over the edges, no triplet list): the result is
/// the same [`Assembly`] that [`Assembly::builder`] makes from the terms (+1 on both diagonal
/// entries, −1 off the diagonal, `shift` on every diagonal entry), in a fraction of the time and
/// memory.
///
/// ```
/// use sparsegrad::problems::graph::laplacian_assembly;
/// // Path 0 – 1 – 2, A = I + L(w).
/// let asm = laplacian_assembly(3, &[(1, 0), (1, 2)], 1.0).unwrap();
/// assert_eq!(asm.structure().nnz(), 5); // 3 diagonal + 2 below it
/// assert_eq!(asm.values(&[2.0, 3.0]).unwrap(), vec![3.0, -2.0, 6.0, -3.0, 4.0]);
/// ```
///
/// # Errors
/// [`crate::Error::IndexOutOfRange`] for an edge endpoint ≥ n (naming the edge);
/// [`crate::Error::NonFinite`] for a non-finite `shift`.
pub fn laplacian_assembly(n: usize, edges: &[(usize, usize)], shift: f64) -> Result<Assembly> {
    crate::error::probe_alloc::<[usize; 3]>(n.saturating_add(1), || {
        format!("the diagonal of a {n}-node Laplacian")
    })?;
    if !shift.is_finite() {
        return Err(Error::NonFinite {
            context: "Laplacian shift",
            row: 0,
            col: 0,
            value: shift,
        });
    }
    for (e, &(i, j)) in edges.iter().enumerate() {
        if i.max(j) >= n {
            return Err(Error::IndexOutOfRange {
                context: "graph edge",
                entry: e,
                what: "node",
                index: i.max(j),
                bound: n,
            });
        }
    }
    let is_loop = |e: usize| edges[e].0 == edges[e].1;
    // Edges grouped by their smaller endpoint (the column of their stored entry) and by both
    // endpoints (the diagonal entries they touch); both counting sorts keep edge order in a group.
    let lower = |e: usize| edges[e].0.min(edges[e].1);
    let upper = |e: usize| edges[e].0.max(edges[e].1);
    let (by_col_ptr, mut by_col) = counting_groups(n, edges.len(), |e| {
        if is_loop(e) {
            [NO_GROUP, NO_GROUP]
        } else {
            [lower(e), NO_GROUP]
        }
    });
    let (inc_ptr, incident) = counting_groups(n, edges.len(), |e| {
        if is_loop(e) {
            [NO_GROUP, NO_GROUP]
        } else {
            [edges[e].0, edges[e].1]
        }
    });
    let mut col_ptr = Vec::with_capacity(n + 1);
    let mut row_idx = Vec::with_capacity(n + by_col.len());
    let mut term_ptr = Vec::with_capacity(n + by_col.len() + 1);
    let mut term_param = Vec::with_capacity(incident.len() + by_col.len());
    let mut term_coeff = Vec::with_capacity(incident.len() + by_col.len());
    let mut constants = Vec::with_capacity(n + by_col.len());
    col_ptr.push(0);
    term_ptr.push(0);
    for j in 0..n {
        // Diagonal: shift + Σ of the incident edges' weights.
        row_idx.push(j);
        constants.push(shift);
        term_param.extend_from_slice(&incident[inc_ptr[j]..inc_ptr[j + 1]]);
        term_coeff.resize(term_param.len(), 1.0);
        term_ptr.push(term_param.len());
        // Below the diagonal: −w_e at (upper(e), j), parallel edges merged into one entry.
        let group = &mut by_col[by_col_ptr[j]..by_col_ptr[j + 1]];
        if group.len() > 1 {
            group.sort_unstable_by_key(|&e| (upper(e), e));
        }
        for (t, &e) in group.iter().enumerate() {
            if t == 0 || upper(group[t - 1]) != upper(e) {
                if t > 0 {
                    term_ptr.push(term_param.len());
                }
                row_idx.push(upper(e));
                constants.push(0.0);
            }
            term_param.push(e);
            term_coeff.push(-1.0);
        }
        if !group.is_empty() {
            term_ptr.push(term_param.len());
        }
        col_ptr.push(row_idx.len());
    }
    let structure = Structure::new(n, n, col_ptr, row_idx, Symmetry::Lower)?;
    Ok(Assembly::from_map(
        structure,
        edges.len(),
        term_ptr,
        term_param,
        term_coeff,
        constants,
    ))
}

/// A standard normal sample (Box–Muller), for reproducible instances without extra crates.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
