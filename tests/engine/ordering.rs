//! Fill-reducing orderings: every ordering gives the same solution and gradient; nested
//! dissection cuts 3D fill; `Auto` chooses as documented and analyses once.

use std::sync::Arc;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid3_edges, grid_edges, laplacian_assembly};
use sparsegrad::{Assembly, Error, Ordering, Solver, Tape};

/// A = I + L(θ) on the k×k×k 7-point grid.
fn grid3(k: usize) -> Assembly {
    let edges = grid3_edges(k).unwrap();
    assert_eq!(edges.len(), 3 * k * k * (k - 1));
    laplacian_assembly(k * k * k, &edges, 1.0).unwrap()
}

fn solve_and_gradient(asm: &Assembly, solver: &Solver) -> (DMatrix<f64>, DMatrix<f64>) {
    let m = asm.n_params();
    let n = asm.structure().nrows();
    let tape = Tape::new();
    let theta = tape.var(DMatrix::from_fn(m, 1, |e, _| 1.0 + 0.5 * (e as f64).sin()));
    let a = tape.assemble(asm, theta).unwrap();
    let b = tape.constant(DMatrix::from_fn(n, 2, |i, c| ((i * (c + 1)) as f64).cos()));
    let x = tape.solve(a, b, solver).unwrap();
    let g = tape.backward(x.sum_squares()).unwrap();
    (x.value().unwrap(), g.wrt(theta).clone())
}

#[test]
fn every_ordering_gives_the_same_solution_and_gradient() {
    let asm = grid3(7);
    let n = asm.structure().nrows();
    let reverse: Arc<[usize]> = (0..n).rev().collect();
    let (x0, g0) = solve_and_gradient(&asm, &Solver::cholesky().with_ordering(Ordering::Amd));
    for ordering in [
        Ordering::Auto,
        Ordering::NestedDissection,
        Ordering::Natural,
        Ordering::ReverseCuthillMcKee,
        Ordering::Custom(reverse),
    ] {
        for solver in [Solver::cholesky(), Solver::ldlt()] {
            let solver = solver.with_ordering(ordering.clone());
            let (x, g) = solve_and_gradient(&asm, &solver);
            let (ex, eg) = ((&x - &x0).amax() / x0.amax(), (&g - &g0).amax() / g0.amax());
            assert!(ex < 1e-13 && eg < 1e-12, "{ordering:?}: {ex:e} {eg:e}");
        }
    }
}

/// A 4 × 250 strip whose unknowns were shuffled: reverse Cuthill–McKee finds the band again, so
/// its factor is about as small as the natural ordering's on the strip numbered across its short
/// side (bandwidth 4), where the shuffled numbering's natural ordering costs 50× the flops; the
/// solution and gradient match AMD's.
#[test]
fn reverse_cuthill_mckee_recovers_a_shuffled_band() {
    let (w, len) = (4, 250);
    let n = w * len;
    // label(v) = 389 v mod 1000 (gcd(389, 1000) = 1): neighbours land far apart.
    let strip = |label: &dyn Fn(usize) -> usize| {
        let mut edges = Vec::new();
        for x in 0..len {
            for y in 0..w {
                let v = x * w + y;
                if y + 1 < w {
                    edges.push((label(v), label(v + 1)));
                }
                if x + 1 < len {
                    edges.push((label(v), label(v + w)));
                }
            }
        }
        laplacian_assembly(n, &edges, 1.0).unwrap()
    };
    let (asm, ordered) = (strip(&|v| (389 * v) % n), strip(&|v| v));
    let predict = |asm: &Assembly, o: Ordering| {
        Solver::cholesky()
            .with_ordering(o)
            .analysis_report(asm.structure())
            .unwrap()
            .prediction
    };
    let rcm = predict(&asm, Ordering::ReverseCuthillMcKee);
    let band = predict(&ordered, Ordering::Natural);
    let shuffled = predict(&asm, Ordering::Natural);
    // Measured: nnz(L) 5720 / 4987 / 23 096, flops 3.3e4 / 2.5e4 / 1.9e6.
    assert!(
        rcm.nnz_l <= 1.25 * band.nnz_l && rcm.flops <= 1.5 * band.flops,
        "{rcm:?} vs {band:?}"
    );
    assert!(shuffled.flops > 20.0 * rcm.flops, "{shuffled:?} vs {rcm:?}");
    let (x0, g0) = solve_and_gradient(&asm, &Solver::cholesky().with_ordering(Ordering::Amd));
    for solver in [Solver::cholesky(), Solver::lu()] {
        let (x, g) = solve_and_gradient(&asm, &solver.with_ordering(Ordering::ReverseCuthillMcKee));
        let (ex, eg) = ((&x - &x0).amax() / x0.amax(), (&g - &g0).amax() / g0.amax());
        assert!(ex < 1e-12 && eg < 1e-11, "{ex:e} {eg:e}");
    }
}

#[test]
fn nested_dissection_cuts_3d_fill_and_auto_chooses_it() {
    let asm = grid3(16);
    let s = asm.structure();
    let predict = |o: Ordering| {
        Solver::cholesky()
            .with_ordering(o)
            .analysis_report(s)
            .unwrap()
            .prediction
    };
    let (amd, nd, natural) = (
        predict(Ordering::Amd),
        predict(Ordering::NestedDissection),
        predict(Ordering::Natural),
    );
    // Natural ordering of a 16³ grid fills a band of width 256; ND and AMD far less. A METIS
    // permutation read in the wrong direction would fill more than AMD.
    assert!(
        nd.nnz_l < 0.5 * natural.nnz_l,
        "{nd:?} vs natural {natural:?}"
    );
    assert!(nd.flops < amd.flops, "{nd:?} vs AMD {amd:?}");
    let auto = Solver::cholesky().analysis_report(s).unwrap();
    if auto.candidates.len() == 2 {
        assert_eq!(auto.ordering, Ordering::NestedDissection, "{auto:?}");
    } else {
        assert_eq!(auto.ordering, Ordering::Amd);
    }
    // A 2D grid keeps AMD without trying nested dissection.
    let flat = laplacian_assembly(48 * 48, &grid_edges(48).unwrap(), 1.0).unwrap();
    let report = Solver::cholesky()
        .analysis_report(flat.structure())
        .unwrap();
    assert_eq!(
        (report.ordering, report.candidates.len()),
        (Ordering::Amd, 1)
    );
}

#[test]
fn auto_tries_nested_dissection_on_a_3d_grid_and_analyses_once() {
    // 28³: AMD predicts ~600 flops per factor entry (24³ is just below CHOLMOD's 500).
    let asm = grid3(28);
    let s = asm.structure();
    let report = Solver::cholesky().analysis_report(s).unwrap();
    assert_eq!(report.candidates.len(), 2, "{report:?}");
    assert_eq!(report.ordering, Ordering::NestedDissection, "{report:?}");
    // The candidates are compared by their exact column counts; faer's symbolic analysis is
    // built for nested dissection (and for AMD first when the two are not run concurrently).
    let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
    Solver::cholesky().factorize(s, &values).unwrap();
    let after_first = s.symbolic_analyses();
    assert!((1..=2).contains(&after_first), "{after_first}");
    for _ in 0..3 {
        Solver::cholesky().factorize(s, &values).unwrap();
    }
    assert_eq!(s.symbolic_analyses(), after_first);
}

#[test]
fn a_custom_ordering_must_be_a_permutation() {
    let asm = grid3(3);
    let s = asm.structure();
    let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
    for bad in [vec![0usize; 27], (0..26).collect(), (1..28).collect()] {
        let e = Solver::cholesky()
            .with_ordering(Ordering::Custom(bad.into()))
            .factorize(s, &values)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    what: "custom ordering",
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(matches!(
        Solver::lu().analysis_report(s),
        Err(Error::Unsupported { .. })
    ));
}

/// Factors from 1e8 predicted flops run multifrontally on the rayon pool; the result must not
/// depend on the number of threads.
#[test]
fn parallel_factorization_is_bit_identical_at_one_and_two_threads() {
    let asm = grid3(30);
    let s = asm.structure();
    let report = Solver::cholesky().analysis_report(s).unwrap();
    assert!(
        report.prediction.flops >= 1e9,
        "{report:?}: too small to run in parallel"
    );
    let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
    let described = Solver::cholesky().factorize(s, &values).unwrap().describe();
    assert!(described.contains("multifrontal"), "{described}");
    let run =
        |threads: usize| on_threads(threads, || solve_and_gradient(&asm, &Solver::cholesky()));
    let (x1, g1) = run(1);
    let (x2, g2) = run(2);
    assert!(
        x1 == x2 && g1 == g2,
        "results differ between 1 and 2 threads"
    );
}

/// `Auto` on a 3D-looking graph of ≥ 20 000 unknowns runs METIS concurrently with AMD's exact
/// prediction: the decision and both predictions are the same on 1 and 2 threads, and faer's
/// symbolic analysis is built for the chosen ordering only; on a 2D grid only AMD's is built.
#[test]
fn auto_analysis_is_the_same_on_one_and_two_threads() {
    let analyse = |threads: usize, asm: &Assembly| {
        on_threads(threads, || {
            let s = asm.structure();
            let report = Solver::cholesky().analysis_report(s).unwrap();
            let counted = s.symbolic_analyses();
            let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
            Solver::cholesky().factorize(s, &values).unwrap();
            (format!("{report:?}"), counted, s.symbolic_analyses())
        })
    };
    let one = analyse(1, &grid3(30));
    let two = analyse(2, &grid3(30));
    assert_eq!(one.0, two.0);
    assert!(one.0.contains("ordering: NestedDissection"), "{}", one.0);
    // Nested dissection's analysis only, built beside its counts, on one thread as on two.
    assert_eq!((one.1, one.2, two.1, two.2), (1, 1, 1, 1), "{}", one.0);
    let k = 160;
    let flat = laplacian_assembly(k * k, &grid_edges(k).unwrap(), 1.0).unwrap();
    let (report, analyses, _) = analyse(2, &flat);
    assert_eq!(analyses, 1, "{report}");
    assert!(!report.contains("NestedDissection"), "{report}");
}

/// Large multi-RHS solves run in parallel column blocks: the same bits on 1 and 2 threads, and
/// the same solution as the residual demands.
#[test]
fn parallel_multi_rhs_solves_are_bit_identical() {
    let asm = grid3(24);
    let s = asm.structure();
    let values = asm.values(&vec![1.3; asm.n_params()]).unwrap();
    let n = s.nrows();
    let b = DMatrix::from_fn(n, 18, |i, c| ((i + 5 * c) as f64 * 0.37).sin());
    let solve = |threads: usize| {
        on_threads(threads, || {
            let f = Solver::cholesky().factorize(s, &values).unwrap();
            let mut x = b.clone();
            f.solve_in_place(&mut x).unwrap();
            x
        })
    };
    let (x1, x2) = (solve(1), solve(2));
    assert!(x1 == x2, "results differ between 1 and 2 threads");
    let a = s.to_csc_full(&values).unwrap();
    let residual = (&a * &x1 - &b).amax() / b.amax();
    assert!(residual < 1e-12, "{residual:e}");
}

/// A convection–diffusion operator on the k×k×k grid: a General structure whose pattern is
/// symmetric and whose values are not (upwinded edges), A = I + Σ_e θ_e (diffusion + drift).
fn convection_diffusion(k: usize) -> Assembly {
    let n = k * k * k;
    let edges = grid3_edges(k).unwrap();
    let mut builder = Assembly::builder(n, n, edges.len());
    for (e, &(i, j)) in edges.iter().enumerate() {
        builder = builder
            .entry(i, i, e, 1.0)
            .entry(j, j, e, 1.0)
            .entry(i, j, e, -1.3)
            .entry(j, i, e, -0.7);
    }
    for i in 0..n {
        builder = builder.constant(i, i, 1.0);
    }
    builder.build().unwrap()
}

/// LU takes every column ordering (COLAMD for Auto and Amd; METIS on the column graph, natural
/// and a given permutation through faer's supernodal analysis): the same solution as a dense LU
/// and the same gradient (the adjoint runs the transpose solve), and each ordering is analysed
/// once.
#[test]
fn lu_column_orderings_agree_with_dense_and_each_other() {
    let asm = convection_diffusion(6);
    let n = asm.structure().nrows();
    let m = asm.n_params();
    let theta: Vec<f64> = (0..m).map(|e| 1.0 + 0.5 * (e as f64).sin()).collect();
    let b = DMatrix::from_fn(n, 2, |i, c| ((i * (c + 1)) as f64).cos());
    let dense = asm.to_csc(&theta).unwrap();
    let dense: DMatrix<f64> = DMatrix::from(&dense);
    let expected = dense.clone().lu().solve(&b).unwrap();
    let reverse: Arc<[usize]> = (0..n).rev().collect();
    let mut reference_gradient: Option<DMatrix<f64>> = None;
    for ordering in [
        Ordering::Auto,
        Ordering::Amd,
        Ordering::NestedDissection,
        Ordering::Natural,
        Ordering::ReverseCuthillMcKee,
        Ordering::Custom(reverse),
    ] {
        let solver = Solver::lu().with_ordering(ordering.clone());
        let tape = Tape::new();
        let th = tape.var(DMatrix::from_column_slice(m, 1, &theta));
        let a = tape.assemble(&asm, th).unwrap();
        let x = tape.solve(a, tape.constant(b.clone()), &solver).unwrap();
        let value = x.value().unwrap();
        let err = (&value - &expected).amax() / expected.amax();
        assert!(err < 1e-12, "{ordering:?}: solution off by {err:e}");
        let g = tape.backward(x.sum_squares()).unwrap().wrt(th).clone();
        match &reference_gradient {
            None => reference_gradient = Some(g),
            Some(g0) => {
                let eg = (&g - g0).amax() / g0.amax();
                assert!(eg < 1e-11, "{ordering:?}: gradient off by {eg:e}");
            }
        }
        let before = asm.structure().symbolic_analyses();
        let factor = solver
            .factorize(asm.structure(), &asm.values(&theta).unwrap())
            .unwrap();
        assert_eq!(
            asm.structure().symbolic_analyses(),
            before,
            "{ordering:?} re-analysed"
        );
        // Auto and Amd are COLAMD (faer's own analysis); the others are our permutations.
        let expected_kind = if matches!(ordering, Ordering::Auto | Ordering::Amd) {
            "COLAMD"
        } else {
            "given column ordering"
        };
        assert!(
            factor.describe().contains(expected_kind),
            "{}",
            factor.describe()
        );
    }
    // The gradient itself: the adjoint identity against the dense inverse, for one entry of θ.
    let g0 = reference_gradient.unwrap();
    let h = 1e-6;
    let loss = |t: &[f64]| {
        let d: DMatrix<f64> = DMatrix::from(&asm.to_csc(t).unwrap());
        d.lu().solve(&b).unwrap().norm_squared()
    };
    for e in [0, m / 2, m - 1] {
        let (mut up, mut down) = (theta.clone(), theta.clone());
        up[e] += h;
        down[e] -= h;
        let fd = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!(
            (fd - g0[e]).abs() <= 1e-6 * fd.abs().max(1.0),
            "θ[{e}]: {} vs finite difference {fd}",
            g0[e]
        );
    }
}

/// A bad custom LU column ordering is an error, not a panic.
#[test]
fn lu_rejects_a_custom_ordering_that_is_not_a_permutation() {
    let asm = convection_diffusion(3);
    let n = asm.structure().nrows();
    let theta = vec![1.0; asm.n_params()];
    let values = asm.values(&theta).unwrap();
    let twice: Arc<[usize]> = (0..n).map(|i| i / 2).collect();
    let Err(err) = Solver::lu()
        .with_ordering(Ordering::Custom(twice))
        .factorize(asm.structure(), &values)
    else {
        panic!("a non-permutation was accepted");
    };
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
}

/// A large graph that does not look 3D (a 60 × 60 × 8 slab: 28 800 unknowns) whose AMD factor
/// is below the rule's threshold by AMD's own estimate (423 flops per entry < 500 exactly): `Auto`
/// builds AMD's analysis at once and reports its prediction, nested dissection is not a
/// candidate, nothing is analysed twice, and the report is the same on 1 and 2 threads.
#[test]
fn auto_builds_amds_analysis_first_on_a_large_flat_graph() {
    let (a, b, c) = (60, 60, 8);
    let id = |x: usize, y: usize, z: usize| (x * b + y) * c + z;
    let mut edges = vec![];
    for x in 0..a {
        for y in 0..b {
            for z in 0..c {
                for (dx, dy, dz) in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
                    if x + dx < a && y + dy < b && z + dz < c {
                        edges.push((id(x, y, z), id(x + dx, y + dy, z + dz)));
                    }
                }
            }
        }
    }
    let report = |threads: usize| {
        let asm = laplacian_assembly(a * b * c, &edges, 1.0).unwrap();
        on_threads(threads, || {
            let s = asm.structure();
            let r = Solver::cholesky().analysis_report(s).unwrap();
            assert_eq!(s.symbolic_analyses(), 1, "{r:?}");
            let values = asm.values(&vec![1.0; asm.n_params()]).unwrap();
            Solver::cholesky().factorize(s, &values).unwrap();
            assert_eq!(s.symbolic_analyses(), 1, "{r:?}");
            let stored = Solver::cholesky()
                .with_ordering(Ordering::Amd)
                .analysis_report(s)
                .unwrap()
                .prediction;
            (r, stored)
        })
    };
    let (one, stored) = report(1);
    assert_eq!(one, report(2).0);
    assert_eq!(
        (one.ordering.clone(), one.candidates.len()),
        (Ordering::Amd, 1)
    );
    assert_eq!(one.prediction, stored);
    assert!(stored.flops < 500.0 * stored.nnz_l, "{stored:?}");
}

/// `f` on a fresh rayon pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
