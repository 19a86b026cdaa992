//! Fill-reducing orderings for the Cholesky / LDLᵀ symbolic analysis: faer's AMD, METIS nested
//! dissection (the vendored, thread-safe METIS through [`super::metis`]), natural and user
//! orderings, and the automatic choice between AMD and nested dissection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use faer::perm::PermRef;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholesky, SymbolicCholeskyRaw,
    SymmetricOrdering,
};
use faer::Side;

use super::analysis::{derived, full_pattern, lock, slot};
use super::multifrontal::Multifrontal;
use super::supervariables::Compressed;
use crate::error::{Error, Result};
use crate::solve::{AnalysisReport, Ordering, Prediction};
use crate::sparse::Structure;

/// CHOLMOD's rule: AMD is good enough unless its factor is 3D-like.
const ND_FLOPS_PER_ENTRY: f64 = 500.0;
const ND_FILL_RATIO: f64 = 5.0;

/// A permutation: (new → old, old → new).
type Permutation = (Vec<usize>, Vec<usize>);

/// The symbolic analyses of one structure, by ordering, and the `Auto` decision.
#[derive(Default)]
struct CholeskyAnalyses {
    by_ordering: Mutex<HashMap<Ordering, Analysed>>,
    /// AMD's and nested dissection's permutations (new → old, old → new).
    permutations: Mutex<HashMap<Ordering, Arc<Permutation>>>,
    /// AMD's own estimate of its factor's flops per entry (on A's graph, not compressed).
    amd_estimate: Mutex<Option<f64>>,
    auto: Mutex<Option<AnalysisReport>>,
}

fn analyses(structure: &Structure) -> Arc<CholeskyAnalyses> {
    slot(structure)
}

/// The predicted size of a symbolic factor.
fn predict(symbolic: &SymbolicCholesky<usize>) -> Prediction {
    let (mut nnz_l, mut flops) = (0.0, 0.0);
    let mut add = |count: f64| {
        nnz_l += count;
        flops += count * count;
    };
    match symbolic.raw() {
        SymbolicCholeskyRaw::Simplicial(s) => {
            for w in s.col_ptr().windows(2) {
                add((w[1] - w[0]) as f64);
            }
        }
        SymbolicCholeskyRaw::Supernodal(s) => {
            let (begin, end, below) = (s.supernode_begin(), s.supernode_end(), s.nnz_per_super());
            for sn in 0..s.n_supernodes() {
                let width = end[sn] - begin[sn];
                for c in 0..width {
                    add((width - c + below[sn]) as f64);
                }
            }
        }
    }
    Prediction { nnz_l, flops }
}

/// A symbolic analysis and its predicted factor, computed together once, with the slot for the
/// multifrontal numeric plan built from this very analysis (so the plan is found by the analysis
/// it belongs to, never by an address).
#[derive(Clone)]
pub(crate) struct Analysed {
    /// faer's symbolic factor.
    pub(crate) symbolic: Arc<SymbolicCholesky<usize>>,
    /// Its predicted size.
    pub(crate) prediction: Prediction,
    /// The multifrontal plan and workspace of `symbolic`, made on the first LLᵀ factorization
    /// that uses one (`None` inside: the tree does not suit the plan, faer's kernel runs).
    pub(crate) multifrontal: Arc<OnceLock<Option<Arc<Multifrontal>>>>,
}

/// The structure's symbolic Cholesky analysis for `ordering` with its prediction, computed (and
/// counted) once; the hot path is two cache look-ups.
pub(crate) fn symbolic(structure: &Structure, ordering: &Ordering) -> Result<Analysed> {
    let resolved = match ordering {
        Ordering::Auto => {
            let decided = lock(&analyses(structure).auto)
                .as_ref()
                .map(|r| r.ordering.clone());
            match decided {
                Some(o) => o,
                None => report(structure)?.ordering,
            }
        }
        other => other.clone(),
    };
    if let Some(found) = lock(&analyses(structure).by_ordering).get(&resolved) {
        return Ok(found.clone());
    }
    let symbolic = analyze(structure, &resolved)?;
    Ok(store(structure, resolved, symbolic))
}

/// Keeps a computed symbolic analysis (counted once; a concurrent twin that got there first
/// wins, so every caller sees the same one).
fn store(structure: &Structure, ordering: Ordering, symbolic: SymbolicCholesky<usize>) -> Analysed {
    let cache = analyses(structure);
    let mut by_ordering = lock(&cache.by_ordering);
    if let Some(found) = by_ordering.get(&ordering) {
        return found.clone();
    }
    let prediction = predict(&symbolic);
    let computed = Analysed {
        symbolic: Arc::new(symbolic),
        prediction,
        multifrontal: Arc::default(),
    };
    structure.record_analysis();
    by_ordering.insert(ordering, computed.clone());
    computed
}

/// From this many unknowns `Auto` compares AMD and nested dissection before building a symbolic
/// factorization (and, on a 3D-looking graph, runs them concurrently).
const LARGE_N: usize = 20_000;
/// AMD's own flop estimate per factor entry — from its elimination's counts, (divisions +
/// multiply-subtracts) / (divisions + n), about half of the rule's Σc²/Σc (measured: 67 / 133 on a
/// 256² grid, 122 / 244 on 512², ≈ 212 / 425 on 1024²) — times this factor below the rule's
/// threshold: nested dissection is unlikely to be a candidate, so AMD's analysis is built at once
/// (as for small graphs; exact counts only if the rule then wants nested dissection). A margin of
/// 4 cost the 1024² grid's cold call 80–100 ms of counts (docs/BENCHMARKS.md).
const ESTIMATE_MARGIN: f64 = 2.0;

/// Whether A's graph looks three-dimensional: from a pseudo-peripheral vertex (two breadth-first
/// sweeps), the widest BFS level holds at least n^0.6 vertices — a 2D grid's widest front is
/// O(n^½) (k of k² on a 512² grid: 512 against 1782), a 3D grid's O(n^⅔) (about 0.75 k² of k³
/// from a corner; 1728 against 1060 at 48³). The graph is the supervariable graph when unknowns
/// come in groups. Only a hint: it decides whether nested dissection is *started early*, never
/// which ordering is chosen.
fn looks_three_dimensional(n: usize, col_ptr: &[usize], row_idx: &[usize]) -> bool {
    let mut level = vec![usize::MAX; n];
    let mut queue = Vec::with_capacity(n);
    let mut sweep = |start: usize| -> (usize, usize) {
        level.iter_mut().for_each(|l| *l = usize::MAX);
        queue.clear();
        queue.push(start);
        level[start] = 0;
        let (mut head, mut widest, mut width, mut current) = (0, 0, 0, 0);
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            if level[v] != current {
                widest = widest.max(width);
                current = level[v];
                width = 0;
            }
            width += 1;
            for &w in &row_idx[col_ptr[v]..col_ptr[v + 1]] {
                if level[w] == usize::MAX {
                    level[w] = level[v] + 1;
                    queue.push(w);
                }
            }
        }
        (queue[queue.len() - 1], widest.max(width))
    };
    if n == 0 {
        return false;
    }
    let (far, _) = sweep(0);
    let (_, widest) = sweep(far);
    widest as f64 >= (n as f64).powf(0.6)
}

/// The `Auto` decision for `structure` (made once, with both predictions).
///
/// The candidates are compared by the exact size of their factors ([`super::colcounts`]: column
/// counts from the elimination tree, no factor pattern built; a supernodal analysis may store a
/// few per cent more, the explicit zeros of relaxed supernodes). AMD's prediction decides whether
/// nested dissection is a candidate (CHOLMOD's rule), and faer's symbolic factorization is built
/// for the chosen ordering, by size and shape of the graph:
/// - n < 20 000: AMD's symbolic analysis first (a simplicial factor's counts are exact already);
/// - a larger graph that looks 3D ([`looks_three_dimensional`]): METIS runs concurrently with AMD
///   and its counts, and the symbolic factorization of nested dissection's ordering beside its
///   counts — kept (and counted) only if the rule chooses it;
/// - any other larger graph: AMD's ordering and counts first (unless AMD's own flop estimate is
///   below the rule's threshold: then its analysis, as for small graphs), nested dissection's
///   symbolic factorization beside its counts when it is a candidate.
///
/// Which of these runs depends on the graph only, so the predictions and the choice do not
/// depend on the thread count.
pub(crate) fn report(structure: &Structure) -> Result<AnalysisReport> {
    let cache = analyses(structure);
    if let Some(found) = lock(&cache.auto).clone() {
        return Ok(found);
    }
    let n = structure.nrows();
    let large = n >= LARGE_N;
    let three_d = large && {
        // Both branches read these: compute them once, before the fork.
        match supervariables(structure)? {
            Some(c) => looks_three_dimensional(c.len(), c.col_ptr(), c.row_idx()),
            None => {
                let full = full_pattern(structure)?;
                looks_three_dimensional(n, &full.col_ptr, &full.row_idx)
            }
        }
    };
    // Nested dissection's prediction and, beside it, the symbolic factorization of its ordering.
    let nd_ahead = || -> Result<(Prediction, Option<SymbolicCholesky<usize>>)> {
        permutation(structure, &Ordering::NestedDissection)?;
        let have = lock(&cache.by_ordering).contains_key(&Ordering::NestedDissection);
        let (prediction, ahead) = rayon::join(
            || exact_prediction(structure, &Ordering::NestedDissection),
            || (!have).then(|| analyze(structure, &Ordering::NestedDissection)),
        );
        Ok((prediction?, ahead.transpose()?))
    };
    // AMD's analysis first: its prediction is the stored factor's (relaxed supernodes included).
    let amd_analysed =
        || -> Result<Prediction> { Ok(symbolic(structure, &Ordering::Amd)?.prediction) };
    let (amd, early_nd, exact) = if three_d {
        let (amd, nd) = rayon::join(|| exact_prediction(structure, &Ordering::Amd), nd_ahead);
        (amd?, Some(nd?), true)
    } else if large {
        permutation(structure, &Ordering::Amd)?;
        let below = lock(&cache.amd_estimate)
            .is_some_and(|per_entry| per_entry < ND_FLOPS_PER_ENTRY / ESTIMATE_MARGIN);
        if below {
            (amd_analysed()?, None, false)
        } else {
            (exact_prediction(structure, &Ordering::Amd)?, None, true)
        }
    } else {
        (amd_analysed()?, None, false)
    };
    let anz = structure.nnz().max(1) as f64;
    let mut ahead = None;
    let mut candidates = vec![(Ordering::Amd, amd)];
    if amd.flops >= ND_FLOPS_PER_ENTRY * amd.nnz_l && amd.nnz_l >= ND_FILL_RATIO * anz {
        // The two candidates are compared on exact counts.
        if !exact {
            candidates[0].1 = exact_prediction(structure, &Ordering::Amd)?;
        }
        let (nd, computed) = match early_nd {
            Some(done) => done,
            None if large => nd_ahead()?,
            None => (
                exact_prediction(structure, &Ordering::NestedDissection)?,
                None,
            ),
        };
        ahead = computed;
        candidates.push((Ordering::NestedDissection, nd));
    }
    let (ordering, prediction) = candidates
        .iter()
        .min_by(|a, b| a.1.flops.total_cmp(&b.1.flops))
        .cloned()
        .expect("AMD is always a candidate");
    if let (Ordering::NestedDissection, Some(computed)) = (&ordering, ahead) {
        store(structure, Ordering::NestedDissection, computed);
    }
    let found = AnalysisReport {
        ordering,
        prediction,
        candidates,
        // The solver's precision is filled in by `Solver::analysis_report`.
        precision: crate::solve::Precision::F64,
    };
    let stored = lock(&cache.auto).get_or_insert(found).clone();
    Ok(stored)
}

/// The exact factor size of `ordering` (AMD or nested dissection) on the structure's graph.
fn exact_prediction(structure: &Structure, ordering: &Ordering) -> Result<Prediction> {
    let perm = permutation(structure, ordering)?;
    let full = full_pattern(structure)?;
    Ok(super::colcounts::predict(
        &full.col_ptr,
        &full.row_idx,
        &perm.0,
        &perm.1,
    ))
}

/// The structure's AMD or nested-dissection permutation (new → old, old → new), computed once:
/// `Auto` predicts with it and the symbolic analysis of the chosen one reuses it.
fn permutation(structure: &Structure, ordering: &Ordering) -> Result<Arc<Permutation>> {
    let cache = analyses(structure);
    if let Some(found) = lock(&cache.permutations).get(ordering) {
        return Ok(found.clone());
    }
    let n = structure.nrows();
    let computed = Arc::new(match ordering {
        Ordering::NestedDissection => nested_dissection(structure)?,
        // AMD on the supervariable graph when unknowns come in groups (3 per node in
        // elasticity), else on A's own pattern (faer's AMD orders A + Aᵀ).
        _ => match supervariables(structure)? {
            Some(compressed) => compressed.amd()?,
            None => {
                let (fwd, inv, flops) = super::analysis::amd_order_counted(
                    n,
                    structure.col_ptr(),
                    structure.row_idx(),
                )?;
                let entries = flops.n_div + n as f64;
                *lock(&cache.amd_estimate) =
                    Some((flops.n_div + flops.n_mult_subs_ldl) / entries.max(1.0));
                (fwd, inv)
            }
        },
    });
    let kept = lock(&cache.permutations)
        .entry(ordering.clone())
        .or_insert(computed)
        .clone();
    Ok(kept)
}

fn analyze(structure: &Structure, ordering: &Ordering) -> Result<SymbolicCholesky<usize>> {
    let n = structure.nrows();

    // Natural goes through an identity `Custom` permutation: faer's `Identity` reads the stored
    // triangle differently (measured: a wrong, far too small factor pattern for `Side::Lower`).
    let permutation = match ordering {
        Ordering::Custom(perm) => Arc::new(checked_permutation(perm, n)?),
        Ordering::NestedDissection => permutation(structure, ordering)?,
        Ordering::Auto | Ordering::Amd => permutation(structure, &Ordering::Amd)?,
        Ordering::Natural => Arc::new(((0..n).collect(), (0..n).collect())),
        Ordering::ReverseCuthillMcKee => Arc::new(checked_permutation(
            &super::rcm::order(&*full_pattern(structure)?),
            n,
        )?),
    };
    let (fwd, inv) = &*permutation;
    let method = SymmetricOrdering::Custom(PermRef::new_checked(fwd, inv, n));
    factorize_symbolic_cholesky(
        structure.faer_pattern(),
        Side::Lower,
        method,
        CholeskySymbolicParams {
            supernodal_flop_ratio_threshold: SUPERNODAL_THRESHOLD,
            ..Default::default()
        },
    )
    .map_err(super::analysis::faer_error("symbolic Cholesky"))
}

/// faer's default keeps a factor simplicial below 40 of its flops per factor entry; mid-size 2D
/// factors (grids of ≈ 100² to 128² unknowns, 27–38 there) factor faster supernodally
/// (docs/BENCHMARKS.md, twelfth session), so the switch is at 24. Chains (≈ 1) and grids up to
/// 64² (≈ 18) stay simplicial.
const SUPERNODAL_THRESHOLD: faer::sparse::linalg::SupernodalThreshold =
    faer::sparse::linalg::SupernodalThreshold(0.6);

/// `perm` (new → old) and its inverse, or an error unless `perm` is a permutation of 0..n.
pub(crate) fn checked_permutation(perm: &[usize], n: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let invalid = |reason: String| Error::InvalidArgument {
        what: "custom ordering",
        reason,
    };
    if perm.len() != n {
        return Err(invalid(format!(
            "{} entries for a {n}×{n} matrix",
            perm.len()
        )));
    }
    let mut inv = vec![usize::MAX; n];
    for (new, &old) in perm.iter().enumerate() {
        if old >= n || inv[old] != usize::MAX {
            return Err(invalid(format!(
                "entry {new} is {old}: not a permutation of 0..{n}"
            )));
        }
        inv[old] = new;
    }
    Ok((perm.to_vec(), inv))
}

/// The structure's supervariables (computed once, cached on the structure).
fn supervariables(structure: &Structure) -> Result<Option<Arc<Compressed>>> {
    struct Cached(Option<Arc<Compressed>>);
    let found = derived(structure, || {
        Ok(Cached(if super::supervariables::worth_trying(structure) {
            Compressed::new(&*full_pattern(structure)?).map(Arc::new)
        } else {
            None
        }))
    })?;
    Ok(found.0.clone())
}

/// METIS nested dissection of A's graph (both triangles, no diagonal) — of its supervariable graph
/// with vertex weights when unknowns come in groups: (new → old, old → new).
fn nested_dissection(structure: &Structure) -> Result<(Vec<usize>, Vec<usize>)> {
    let compressed = supervariables(structure)?;
    match &compressed {
        Some(c) => {
            let fwd = super::metis::order(c.len(), c.col_ptr(), c.row_idx(), Some(c.weights()))?;
            let (fwd, _) = c.expand(&fwd);
            checked_permutation(&fwd, structure.nrows())
        }
        None => {
            let full = full_pattern(structure)?;
            let fwd = super::metis::order(structure.nrows(), &full.col_ptr, &full.row_idx, None)?;
            checked_permutation(&fwd, structure.nrows())
        }
    }
}
