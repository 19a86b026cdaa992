//! The multifrontal factor and solves against faer's own, entry by entry.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::LltError;
use faer::sparse::linalg::cholesky::SymbolicCholesky;
use faer::Side;

use super::*;
use crate::solve::Ordering;
use crate::sparse::{Structure, Symmetry};

/// A test system: the k³ grid graph's weighted Laplacian + shift·I, each node expanded into
/// `dofs` unknowns coupled by the SPD block I + 0.3·11ᵀ (a Kronecker product, so the unknowns
/// of a node are indistinguishable — supervariables), stored as `symmetry`.
struct System {
    structure: std::sync::Arc<Structure>,
    values: Vec<f64>,
}

fn grid3_system(k: usize, dofs: usize, shift: f64, symmetry: Symmetry) -> System {
    let node = |x: usize, y: usize, z: usize| x + k * (y + k * z);
    let mut laplacian: Vec<(usize, usize, f64)> = Vec::new();
    let mut degree = vec![shift; k * k * k];
    for z in 0..k {
        for y in 0..k {
            for x in 0..k {
                let i = node(x, y, z);
                for (dx, dy, dz) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
                    if x + dx < k && y + dy < k && z + dz < k {
                        let j = node(x + dx, y + dy, z + dz);
                        let w = 1.5 + 0.5 * ((laplacian.len() / 2) as f64).sin();
                        laplacian.push((i, j, -w));
                        laplacian.push((j, i, -w));
                        degree[i] += w;
                        degree[j] += w;
                    }
                }
            }
        }
    }
    laplacian.extend(degree.iter().enumerate().map(|(i, &d)| (i, i, d)));
    let mut entries = Vec::new();
    for &(i, j, v) in &laplacian {
        for a in 0..dofs {
            for b in 0..dofs {
                let (r, c) = (i * dofs + a, j * dofs + b);
                if symmetry == Symmetry::Lower && r < c {
                    continue;
                }
                let block = if a == b { 1.3 } else { 0.3 };
                entries.push((r, c, v * block));
            }
        }
    }
    let n = k * k * k * dofs;
    let pairs: Vec<(usize, usize)> = entries.iter().map(|&(r, c, _)| (r, c)).collect();
    let (structure, slot) = Structure::from_pairs(n, n, &pairs, symmetry).unwrap();
    let mut values = vec![0.0; structure.nnz()];
    for (&(_, _, v), &at) in entries.iter().zip(&slot) {
        values[at] += v;
    }
    System { structure, values }
}

/// faer's left-looking LLᵀ of the same analysis, in the same layout.
fn faer_llt(
    structure: &Structure,
    values: &[f64],
    symbolic: &SymbolicCholesky<usize>,
) -> std::result::Result<Vec<f64>, usize> {
    let mut l = vec![0.0; symbolic.len_val()];
    let req = symbolic.factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default());
    let mut buffer = MemBuffer::new(req);
    symbolic
        .factorize_numeric_llt(
            &mut l,
            faer::sparse::SparseColMatRef::new(structure.faer_pattern(), values),
            Side::Lower,
            Default::default(),
            Par::Seq,
            MemStack::new(&mut buffer),
            Default::default(),
        )
        .map_err(|LltError::NonPositivePivot { index }| index)?;
    Ok(l)
}

fn cases() -> Vec<(&'static str, System, Ordering)> {
    vec![
        (
            "grid3 16, nested dissection",
            grid3_system(16, 1, 1.0, Symmetry::Full),
            Ordering::NestedDissection,
        ),
        (
            "grid3 14, AMD",
            grid3_system(14, 1, 1.0, Symmetry::Full),
            Ordering::Amd,
        ),
        (
            "grid3 8 × 3 unknowns per node (lower storage, supervariables)",
            grid3_system(8, 3, 0.5, Symmetry::Lower),
            Ordering::NestedDissection,
        ),
    ]
}

/// The multifrontal factor equals faer's left-looking one entry by entry (same layout, the
/// same sums in another order), on a cut tree with parallel subtrees and top supernodes.
#[test]
fn matches_faer_left_looking_factor() {
    for (name, System { structure, values }, ordering) in cases() {
        let symbolic = super::super::ordering::symbolic(&structure, &ordering)
            .unwrap()
            .symbolic;
        let plan = Plan::new(&structure, &symbolic).expect(name);
        assert!(
            plan.subtree_ptr.len() > 2 && plan.subtree_nodes.len() + 1 < plan.begin.len(),
            "{name}: the tree was not cut ({} subtrees, {} of {} supernodes in them)",
            plan.subtree_ptr.len() - 1,
            plan.subtree_nodes.len(),
            plan.begin.len() - 1
        );
        let expected = faer_llt(&structure, &values, &symbolic).unwrap();
        let work = plan.workspace();
        let mut l = vec![0.0; symbolic.len_val()];
        plan.factor(&values, &mut l, &work).expect(name);
        assert!(work.held() > 0, "{name}: no update buffer was kept");
        // L's entries: each supernode's columns from their diagonal down (faer's kernels
        // leave workspace values above the diagonal of the diagonal block; nothing reads
        // them).
        let mut entries = Vec::new();
        for sn in 0..plan.begin.len() - 1 {
            let (w, h) = (plan.width(sn), plan.width(sn) + plan.below(sn));
            for c in 0..w {
                entries.extend((c..h).map(|r| plan.val_ptr[sn] + c * h + r));
            }
        }
        let scale = entries
            .iter()
            .fold(0.0f64, |m, &e| m.max(expected[e].abs()));
        let diff = entries
            .iter()
            .fold(0.0f64, |m, &e| m.max((expected[e] - l[e]).abs()));
        assert!(entries.len() as f64 >= 0.6 * l.len() as f64);
        assert!(
            diff <= 1e-13 * scale,
            "{name}: max difference {diff:e} of {scale:e}"
        );
        // A second factorization reuses the recycled update buffers, into a buffer holding
        // other values (each front clears its own block): same bits.
        let mut again = vec![f64::NAN; l.len()];
        plan.factor(&values, &mut again, &work).expect(name);
        assert!(again == l, "{name}: refactorization differs");
    }
}

/// The tree-parallel solves give faer's supernodal solve to rounding, for 1 column (whole
/// subtrees over one work vector) and 3 (front by front).
#[test]
fn solves_match_faer() {
    use faer::sparse::linalg::cholesky::LltRef;
    for (name, System { structure, values }, ordering) in cases() {
        let symbolic = super::super::ordering::symbolic(&structure, &ordering)
            .unwrap()
            .symbolic;
        let plan = Plan::new(&structure, &symbolic).expect(name);
        let mut l = vec![0.0; symbolic.len_val()];
        plan.factor(&values, &mut l, &plan.workspace()).expect(name);
        let n = structure.nrows();
        for k in [1, 3] {
            let b = faer::Mat::<f64>::from_fn(n, k, |i, c| ((i * 7 + c * 3) as f64).sin());
            let mut expected = b.clone();
            let req = symbolic.solve_in_place_scratch::<f64>(k, Par::Seq);
            let mut buffer = MemBuffer::new(req);
            LltRef::new(&symbolic, &l).solve_in_place_with_conj(
                faer::Conj::No,
                expected.as_mut(),
                Par::Seq,
                MemStack::new(&mut buffer),
            );
            let mut x = b.clone();
            let permutation = symbolic.perm().map(|p| p.arrays().0);
            plan.solve_in_place(&l, permutation, x.as_mut());
            let scale = expected.norm_max();
            let diff = (&x - &expected).norm_max();
            assert!(
                diff <= 1e-12 * scale,
                "{name}, k = {k}: {diff:e} of {scale:e}"
            );
        }
    }
}

/// A matrix that is not positive definite fails at the same pivot as faer's factorization.
#[test]
fn non_positive_pivot_matches_faer() {
    let System { structure, values } = grid3_system(16, 1, -0.05, Symmetry::Full);
    let symbolic = super::super::ordering::symbolic(&structure, &Ordering::NestedDissection)
        .unwrap()
        .symbolic;
    let plan = Plan::new(&structure, &symbolic).unwrap();
    let expected = faer_llt(&structure, &values, &symbolic).unwrap_err();
    let mut l = vec![0.0; symbolic.len_val()];
    let Err(FrontError::NonPositivePivot(found)) = plan.factor(&values, &mut l, &plan.workspace())
    else {
        panic!("L − 0.05 I factored");
    };
    assert_eq!(found, expected);
}
