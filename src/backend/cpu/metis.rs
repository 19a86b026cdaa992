//! METIS nested dissection, parallel over the top separators.
//!
//! METIS 5.1.0 is compiled from `vendor/metis` by the build script, patched to be thread-safe
//! (`vendor/metis/PATCHES.md`): its random generator is per thread and re-seeded by every call,
//! and its signal traps survive overlapping calls. So two METIS calls may run at once, and each
//! call's result is a function of its graph alone. [`order`] uses that: a graph of at least
//! [`SPLIT_MIN`] vertices is split by one vertex separator (`METIS_ComputeVertexSeparator`, the
//! bisection `METIS_NodeND` itself runs at its top level), the two parts are ordered concurrently
//! on the rayon pool, recursively, and the separator is numbered last — the nested dissection
//! `METIS_NodeND` computes, with its top levels in parallel. Whether a graph is split depends on
//! its size only, never on the thread count, so the ordering is the same on any number of
//! threads. This file holds the crate's only `unsafe` outside `cuda/` and `mumps/`: the three
//! FFI calls.

use std::ffi::c_int;

use crate::error::{Error, Result};

/// METIS's index type (`IDXTYPEWIDTH` 32).
type Idx = i32;

#[allow(unsafe_code)]
extern "C" {
    fn METIS_SetDefaultOptions(options: *mut Idx) -> c_int;
    fn METIS_NodeND(
        nvtxs: *mut Idx,
        xadj: *mut Idx,
        adjncy: *mut Idx,
        vwgt: *mut Idx,
        options: *mut Idx,
        perm: *mut Idx,
        iperm: *mut Idx,
    ) -> c_int;
    fn METIS_ComputeVertexSeparator(
        nvtxs: *mut Idx,
        xadj: *mut Idx,
        adjncy: *mut Idx,
        vwgt: *mut Idx,
        options: *mut Idx,
        sepsize: *mut Idx,
        part: *mut Idx,
    ) -> c_int;
}

/// `METIS_OK`.
const METIS_OK: c_int = 1;
/// `METIS_NOPTIONS`.
const NOPTIONS: usize = 40;

/// Graphs of at least this many vertices are split by a separator and their parts ordered
/// concurrently. Measured on 48³ and 40³ grids (docs/BENCHMARKS.md, fifteenth session): the
/// split costs what `METIS_NodeND`'s own top level costs, and its ordering's fill is within a
/// few per cent of `METIS_NodeND`'s (either way).
pub(crate) const SPLIT_MIN: usize = 20_000;

/// A graph in METIS's form: offsets, neighbours (no self loops), optional vertex weights.
struct Graph {
    xadj: Vec<Idx>,
    adjncy: Vec<Idx>,
    vwgt: Option<Vec<Idx>>,
}

impl Graph {
    fn len(&self) -> usize {
        self.xadj.len() - 1
    }

    /// The three arrays as METIS takes them (the weights null when absent).
    fn raw(&mut self) -> (*mut Idx, *mut Idx, *mut Idx) {
        (
            self.xadj.as_mut_ptr(),
            self.adjncy.as_mut_ptr(),
            self.vwgt
                .as_mut()
                .map_or(std::ptr::null_mut(), |w| w.as_mut_ptr()),
        )
    }

    /// The graph induced by `keep` (vertices of `self`, increasing), renumbered 0..keep.len().
    fn induced(&self, keep: &[usize]) -> Graph {
        let mut local = vec![Idx::MAX; self.len()];
        for (k, &v) in keep.iter().enumerate() {
            // keep.len() ≤ self.len(), which fits Idx.
            local[v] = k as Idx;
        }
        let mut xadj = Vec::with_capacity(keep.len() + 1);
        let mut adjncy = Vec::new();
        xadj.push(0);
        for &v in keep {
            let (b, e) = (self.xadj[v] as usize, self.xadj[v + 1] as usize);
            adjncy.extend(
                self.adjncy[b..e]
                    .iter()
                    .map(|&w| local[w as usize])
                    .filter(|&w| w != Idx::MAX),
            );
            xadj.push(adjncy.len() as Idx);
        }
        Graph {
            xadj,
            adjncy,
            vwgt: self
                .vwgt
                .as_ref()
                .map(|w| keep.iter().map(|&v| w[v]).collect()),
        }
    }
}

/// METIS nested dissection of the `n`-vertex graph with the symmetric pattern `col_ptr` /
/// `row_idx` (diagonal entries ignored) and optional vertex weights: the ordering, new → old.
pub(crate) fn order(
    n: usize,
    col_ptr: &[usize],
    row_idx: &[usize],
    weights: Option<Vec<usize>>,
) -> Result<Vec<usize>> {
    let too_big = || Error::IndexOverflow {
        backend: "METIS (i32 indices)",
        what: format!("the graph size ({n} vertices, entries)"),
        value: row_idx.len().max(n) as u64,
        limit: i32::MAX as u64,
        hint: "; use Ordering::Amd",
    };
    let index = |v: usize| Idx::try_from(v).map_err(|_| too_big());
    // Every vertex count below (parts of this graph) then fits METIS's indices too.
    index(n)?;
    let mut xadj = Vec::with_capacity(n + 1);
    let mut adjncy = Vec::with_capacity(row_idx.len());
    xadj.push(0);
    for j in 0..n {
        for &i in &row_idx[col_ptr[j]..col_ptr[j + 1]] {
            if i != j {
                adjncy.push(index(i)?);
            }
        }
        xadj.push(index(adjncy.len())?);
    }
    let vwgt = match weights {
        Some(w) => Some(w.into_iter().map(index).collect::<Result<_>>()?),
        None => None,
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    dissect(Graph { xadj, adjncy, vwgt })
}

/// The nested dissection of `graph` (new → old): split while large, `METIS_NodeND` below.
fn dissect(mut graph: Graph) -> Result<Vec<usize>> {
    let n = graph.len();
    if n < SPLIT_MIN {
        return node_nd(graph);
    }
    let part = separator(&mut graph)?;
    let side = |p: Idx| -> Vec<usize> { (0..n).filter(|&v| part[v] == p).collect() };
    let (left, right, sep) = (side(0), side(1), side(2));
    if left.is_empty() || right.is_empty() {
        // No split (METIS put everything on one side): order the graph as a whole.
        return node_nd(graph);
    }
    let (l, r) = rayon::join(
        || dissect(graph.induced(&left)),
        || dissect(graph.induced(&right)),
    );
    let mut perm = Vec::with_capacity(n);
    perm.extend(l?.into_iter().map(|v| left[v]));
    perm.extend(r?.into_iter().map(|v| right[v]));
    perm.extend(sep);
    Ok(perm)
}

fn failed(call: &str, status: c_int) -> Error {
    Error::FactorizationFailed {
        backend: format!("METIS {call}"),
        reason: format!("status {status}"),
    }
}

/// `METIS_NodeND` with the default options (new → old).
fn node_nd(mut graph: Graph) -> Result<Vec<usize>> {
    let n = graph.len();
    let mut nvtxs = n as Idx;
    let (mut perm, mut iperm) = (vec![0 as Idx; n], vec![0 as Idx; n]);
    // SAFETY: METIS_NodeND reads nvtxs, xadj (n + 1 offsets), adjncy (xadj[n] entries, each
    // < n) and vwgt (n weights, or null for unit weights) and writes n entries to perm and iperm;
    // null options select the defaults. All buffers live across the call with those lengths.
    // The vendored METIS keeps no state across calls that another thread could see.
    let (xadj, adjncy, vwgt) = graph.raw();
    #[allow(unsafe_code)]
    let status = unsafe {
        METIS_NodeND(
            &mut nvtxs,
            xadj,
            adjncy,
            vwgt,
            std::ptr::null_mut(),
            perm.as_mut_ptr(),
            iperm.as_mut_ptr(),
        )
    };
    if status != METIS_OK {
        return Err(failed("NodeND", status));
    }
    // METIS: row k of the permuted matrix is row perm[k] of A — faer's forward array.
    Ok(perm.into_iter().map(|p| p as usize).collect())
}

/// `METIS_ComputeVertexSeparator` with the default options: per vertex 0 or 1 (the two parts)
/// or 2 (the separator).
fn separator(graph: &mut Graph) -> Result<Vec<Idx>> {
    let n = graph.len();
    let mut options = [0 as Idx; NOPTIONS];
    let (mut nvtxs, mut sepsize) = (n as Idx, 0 as Idx);
    let mut part = vec![0 as Idx; n];
    // SAFETY: METIS_SetDefaultOptions writes METIS_NOPTIONS entries. METIS_ComputeVertexSeparator
    // reads nvtxs, xadj (n + 1), adjncy (xadj[n] entries, each < n), vwgt (n or null) and the
    // options, and writes sepsize and n entries of part; all live across the call.
    let (xadj, adjncy, vwgt) = graph.raw();
    #[allow(unsafe_code)]
    let status = unsafe {
        METIS_SetDefaultOptions(options.as_mut_ptr());
        METIS_ComputeVertexSeparator(
            &mut nvtxs,
            xadj,
            adjncy,
            vwgt,
            options.as_mut_ptr(),
            &mut sepsize,
            part.as_mut_ptr(),
        )
    };
    if status != METIS_OK {
        return Err(failed("ComputeVertexSeparator", status));
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k³ 7-point grid as a symmetric pattern (both triangles, no diagonal).
    fn grid3(k: usize) -> (Vec<usize>, Vec<usize>) {
        let id = |x: usize, y: usize, z: usize| (x * k + y) * k + z;
        let (mut col_ptr, mut row_idx) = (vec![0], Vec::new());
        for x in 0..k {
            for y in 0..k {
                for z in 0..k {
                    let mut nb = Vec::new();
                    for (d, c) in [(0, x), (1, y), (2, z)] {
                        let mut at = [x, y, z];
                        if c > 0 {
                            at[d] = c - 1;
                            nb.push(id(at[0], at[1], at[2]));
                        }
                        if c + 1 < k {
                            at[d] = c + 1;
                            nb.push(id(at[0], at[1], at[2]));
                        }
                    }
                    nb.sort_unstable();
                    row_idx.extend(nb);
                    col_ptr.push(row_idx.len());
                }
            }
        }
        (col_ptr, row_idx)
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn split_orderings_are_permutations_and_the_same_on_any_number_of_threads() {
        // 30³ = 27 000 ≥ SPLIT_MIN: split once at the top, both parts by METIS_NodeND.
        let k = 30;
        let n = k * k * k;
        assert!(n >= SPLIT_MIN);
        let (cp, ri) = grid3(k);
        let one = in_pool(1, || order(n, &cp, &ri, None).unwrap());
        let mut seen = vec![false; n];
        for &v in &one {
            assert!(!seen[v], "vertex {v} twice");
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        // The separator is numbered last: its vertices split the first part from the second, so
        // no edge joins a vertex of the first part to one of the second.
        let mut part = vec![2u8; n];
        let mut graph = Graph {
            xadj: cp.iter().map(|&p| p as Idx).collect(),
            adjncy: ri.iter().map(|&i| i as Idx).collect(),
            vwgt: None,
        };
        let sides = separator(&mut graph).unwrap();
        let (left, right) = (
            sides.iter().filter(|&&s| s == 0).count(),
            sides.iter().filter(|&&s| s == 1).count(),
        );
        for (new, &old) in one.iter().enumerate() {
            part[old] = if new < left {
                0
            } else if new < left + right {
                1
            } else {
                2
            };
        }
        for v in 0..n {
            for &w in &ri[cp[v]..cp[v + 1]] {
                assert!(part[v] + part[w] != 1, "edge {v}–{w} crosses the separator");
            }
        }
        // Same ordering on two threads, and with other METIS calls running at the same time
        // (the vendored METIS draws from a per-thread generator, seeded by each call).
        assert_eq!(in_pool(2, || order(n, &cp, &ri, None).unwrap()), one);
        let concurrent: Vec<Vec<usize>> = in_pool(4, || {
            use rayon::prelude::*;
            (0..4)
                .into_par_iter()
                .map(|_| order(n, &cp, &ri, None).unwrap())
                .collect()
        });
        assert!(concurrent.iter().all(|o| *o == one));
    }

    #[test]
    fn degenerate_graphs_above_the_split_size_give_permutations() {
        let n = SPLIT_MIN + 10_001;
        let is_permutation = |p: &[usize]| {
            let mut seen = vec![false; n];
            p.len() == n && p.iter().all(|&v| !std::mem::replace(&mut seen[v], true))
        };
        // No edges (a diagonal matrix), 2-vertex components, a star around vertex 0.
        let edgeless: (Vec<usize>, Vec<usize>) = ((0..=n).collect(), (0..n).collect());
        let pairs: (Vec<usize>, Vec<usize>) = (
            (0..=n).collect(),
            (0..n).map(|v| if v ^ 1 < n { v ^ 1 } else { v }).collect(),
        );
        let mut star = (vec![0], Vec::new());
        for v in 0..n {
            if v == 0 {
                star.1.extend(1..n);
            } else {
                star.1.push(0);
            }
            star.0.push(star.1.len());
        }
        for (name, (cp, ri)) in [("edgeless", edgeless), ("pairs", pairs), ("star", star)] {
            let p = order(n, &cp, &ri, None).unwrap();
            assert!(is_permutation(&p), "{name}");
        }
    }
}
