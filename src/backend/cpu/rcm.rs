//! Reverse Cuthill–McKee ([`Ordering::ReverseCuthillMcKee`](crate::Ordering)): a bandwidth- and
//! profile-reducing ordering of the graph of A + Aᵀ, as SciPy's `reverse_cuthill_mckee` and
//! MATLAB's `symrcm` compute it (George & Liu, *Computer Solution of Large Sparse Positive
//! Definite Systems*, 1981, §4.3).
//!
//! Each connected component is numbered by a breadth-first search from a pseudo-peripheral
//! vertex (George–Liu: repeated searches from a minimum-degree vertex of the last level until the
//! eccentricity stops growing), each vertex's unnumbered neighbours in increasing degree (ties by
//! index, so the result is deterministic); the whole numbering is then reversed. O(nnz) per
//! search; the pseudo-peripheral search takes a few.

use super::analysis::FullPattern;

/// The RCM permutation (new → old) of the `n` vertices of `full` (A + Aᵀ, sorted rows; the
/// diagonal, present or not, is ignored).
pub(crate) fn order(full: &FullPattern) -> Vec<usize> {
    let n = full.col_ptr.len() - 1;
    let neighbours = |v: usize| {
        full.row_idx[full.col_ptr[v]..full.col_ptr[v + 1]]
            .iter()
            .copied()
            .filter(move |&u| u != v)
    };
    let degree: Vec<usize> = (0..n).map(|v| neighbours(v).count()).collect();
    let mut numbered = vec![false; n];
    let mut order = Vec::with_capacity(n);
    // Scratch for the pseudo-peripheral searches: the level of each vertex, per search.
    let mut level = vec![usize::MAX; n];
    let mut queue = Vec::new();
    // Components in the order of their minimum-degree vertex, lowest index first among ties.
    let mut by_degree: Vec<usize> = (0..n).collect();
    by_degree.sort_by_key(|&v| (degree[v], v));
    for &seed in &by_degree {
        if numbered[seed] {
            continue;
        }
        let start = pseudo_peripheral(seed, &neighbours, &degree, &mut level, &mut queue);
        let first = order.len();
        order.push(start);
        numbered[start] = true;
        let mut head = first;
        let mut fresh: Vec<usize> = Vec::new();
        while head < order.len() {
            let v = order[head];
            head += 1;
            fresh.clear();
            fresh.extend(neighbours(v).filter(|&u| !numbered[u]));
            fresh.sort_by_key(|&u| (degree[u], u));
            for &u in &fresh {
                numbered[u] = true;
                order.push(u);
            }
        }
    }
    order.reverse();
    order
}

/// A pseudo-peripheral vertex of `seed`'s component: breadth-first searches from a vertex of
/// minimum degree in the previous search's last level, while the number of levels grows.
/// `level` (all `usize::MAX` on entry and on return) and `queue` are scratch.
fn pseudo_peripheral<I: Iterator<Item = usize>>(
    seed: usize,
    neighbours: &impl Fn(usize) -> I,
    degree: &[usize],
    level: &mut [usize],
    queue: &mut Vec<usize>,
) -> usize {
    let mut root = seed;
    let mut eccentricity = 0;
    loop {
        // Breadth-first levels from `root`.
        queue.clear();
        queue.push(root);
        level[root] = 0;
        let mut head = 0;
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            for u in neighbours(v) {
                if level[u] == usize::MAX {
                    level[u] = level[v] + 1;
                    queue.push(u);
                }
            }
        }
        let depth = queue.last().map_or(0, |&v| level[v]);
        let candidate = queue
            .iter()
            .copied()
            .filter(|&v| level[v] == depth)
            .min_by_key(|&v| (degree[v], v))
            .unwrap_or(root);
        for &v in queue.iter() {
            level[v] = usize::MAX;
        }
        if depth <= eccentricity && eccentricity > 0 {
            return root;
        }
        eccentricity = depth;
        if candidate == root {
            return root;
        }
        root = candidate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_of(n: usize, edges: &[(usize, usize)]) -> FullPattern {
        let mut adj = vec![vec![]; n];
        for &(a, b) in edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        let mut col_ptr = vec![0];
        let mut row_idx = Vec::new();
        for (v, mut a) in adj.into_iter().enumerate() {
            a.push(v);
            a.sort_unstable();
            a.dedup();
            row_idx.extend(a);
            col_ptr.push(row_idx.len());
        }
        FullPattern {
            col_ptr,
            row_idx,
            source: None,
        }
    }

    fn bandwidth(edges: &[(usize, usize)], perm: &[usize]) -> usize {
        let mut inv = vec![0; perm.len()];
        for (new, &old) in perm.iter().enumerate() {
            inv[old] = new;
        }
        edges
            .iter()
            .map(|&(a, b)| inv[a].abs_diff(inv[b]))
            .max()
            .unwrap_or(0)
    }

    /// A path whose vertices were shuffled comes back with bandwidth 1, numbered from one end.
    #[test]
    fn shuffled_path_has_bandwidth_one() {
        let n = 50;
        // label(k) = 17 k mod 50 is a bijection (gcd(17, 50) = 1).
        let label = |k: usize| (17 * k) % n;
        let edges: Vec<_> = (0..n - 1).map(|k| (label(k), label(k + 1))).collect();
        let perm = order(&full_of(n, &edges));
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_eq!(bandwidth(&edges, &perm), 1);
        assert!(perm[0] == label(0) || perm[0] == label(n - 1));
    }

    /// A 6 × 8 grid numbered column-major has bandwidth 6 (its short side); from a shuffled
    /// numbering (bandwidth about 30) RCM, starting at a corner, gets within one of it (its
    /// diagonal levels are up to 6 wide). It also numbers every component of a forest once.
    #[test]
    fn grid_bandwidth_and_components() {
        let (nx, ny) = (8, 6);
        let n = nx * ny;
        let shuffle = |v: usize| (29 * v + 5) % n; // gcd(29, 48) = 1
        let mut edges = Vec::new();
        for x in 0..nx {
            for y in 0..ny {
                let v = x * ny + y;
                if y + 1 < ny {
                    edges.push((shuffle(v), shuffle(v + 1)));
                }
                if x + 1 < nx {
                    edges.push((shuffle(v), shuffle(v + ny)));
                }
            }
        }
        let identity: Vec<usize> = (0..n).collect();
        assert!(bandwidth(&edges, &identity) >= 25);
        let perm = order(&full_of(n, &edges));
        let found = bandwidth(&edges, &perm);
        assert!(found <= ny + 1, "{found}");
        // Two components and an isolated vertex: all numbered once.
        let forest = full_of(7, &[(0, 3), (3, 5), (1, 2), (2, 6)]);
        let mut sorted = order(&forest);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
    }
}
