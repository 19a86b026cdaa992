//! MMA (Svanberg's method of moving asymptotes) against mmapy 0.3.1, Svanberg's own Python port:
//! the reference iterates come from `benches/compare/mma_reference.py` (run in the peers' venv
//! from `bash ../shared/peers/setup.sh --with-topopt`), copied here with all their digits.

use sparsegrad::optim::{minimize_constrained, ConstrainedObjective, MmaSettings};
use sparsegrad::{Error, Result, Tape, Var};

/// Svanberg's toy problem ("MMA and GCMMA", 2007): minimize x₁² + x₂² + x₃² subject to two
/// spheres of radius 3, 0 ≤ x ≤ 5.
struct Toy;
impl ConstrainedObjective for Toy {
    fn evaluate<'t>(&self, tape: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
        let c1 = tape.constant([5.0, 2.0, 1.0]);
        let c2 = tape.constant([3.0, 4.0, 3.0]);
        let g1 = (x - c1).square().sum() - 9.0;
        let g2 = (x - c2).square().sum() - 9.0;
        Ok((x.square().sum(), tape.concat_columns(&[g1, g2])))
    }
}

/// mmapy's first iterates on [`Toy`] from (4, 3, 2), move limit 0.5, a₀ = 1, a = 0, c = 1000,
/// d = 1.
const TOY_ITERATES: [[f64; 3]; 11] = [
    [4.0, 3.0, 2.0],
    [2.3902981671786643, 1.8057193966005893, 0.992864963694163],
    [2.0384520613192105, 1.7623589227860903, 1.2417067140367246],
    [2.0177933318741266, 1.7785570320961257, 1.2391826776547363],
    [2.017625733014628, 1.7793691925515709, 1.2382573549079547],
    [2.0175544789113573, 1.779796200146134, 1.2377584536437833],
    [2.017525865142252, 1.7799679629536538, 1.2375579034873492],
    [2.0175189310863697, 1.7800096048389316, 1.2375093018325571],
    [2.0175185791884744, 1.7800117191920826, 1.2375068342599305],
    [2.0175186423950686, 1.7800113399604587, 1.2375072766953523],
    [2.0175186254057746, 1.7800114418965796, 1.2375071577698487],
];
/// mmapy after 30 iterations (KKT residual 8.4e-7) and its objective.
const TOY_OPTIMUM: [f64; 3] = [2.0175186244973315, 1.7800114473484603, 1.2375071514092555];
const TOY_OBJECTIVE: f64 = 8.770246102674214;

fn toy_settings(iters: u64) -> MmaSettings {
    MmaSettings {
        max_iters: iters,
        kkt_tolerance: 0.0,
        ..MmaSettings::new([0.0], [5.0])
    }
}

#[test]
fn mma_follows_mmapy_iterate_by_iterate() {
    for (k, expected) in TOY_ITERATES.iter().enumerate().skip(1) {
        let out =
            minimize_constrained(Toy, [4.0, 3.0, 2.0], &toy_settings(k as u64), None).unwrap();
        assert_eq!(out.iterations, k as u64);
        let diff = out
            .params
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            diff < 1e-9,
            "iteration {k}: {:?} vs mmapy {expected:?} ({diff:e})",
            out.params
        );
    }
}

#[test]
fn mma_reaches_mmapys_optimum_and_stops_on_the_kkt_residual() {
    let out = minimize_constrained(Toy, [4.0, 3.0, 2.0], &toy_settings(30), None).unwrap();
    for (a, b) in out.params.iter().zip(TOY_OPTIMUM) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
    assert!((out.objective - TOY_OBJECTIVE).abs() < 1e-6, "{out:?}");
    // Both spheres are active at the optimum; both are met to the subproblem's accuracy.
    assert!(out.constraints.iter().all(|g| g.abs() < 1e-6), "{out:?}");
    assert!(out.kkt_residual < 1e-5, "{out:?}");
    // With the default tolerance (1e-6) it stops early, converged, at the same point.
    let early =
        minimize_constrained(Toy, [4.0, 3.0, 2.0], &MmaSettings::new([0.0], [5.0]), None).unwrap();
    assert!(
        early.iterations < 30 && early.termination.contains("converged"),
        "{early:?}"
    );
    assert!(early.kkt_residual <= 1e-6);
    for (a, b) in early.params.iter().zip(TOY_OPTIMUM) {
        assert!((a - b).abs() < 1e-6, "{early:?}");
    }
    // One forward pass per iterate (the start and each new point), the last read from the cache.
    assert_eq!(early.evaluations as u64, early.iterations + 1);
}

/// Minimize Σ w_j / x_j subject to Σ x_j ≤ V: the optimum x_j = V √w_j / Σ √w_k (closed form),
/// reached by mmapy (60 iterations from x = 1, KKT 7.9e-6) and by ours.
struct Reciprocal;
const W: [f64; 5] = [1.0, 4.0, 9.0, 0.25, 2.0];
impl ConstrainedObjective for Reciprocal {
    fn evaluate<'t>(&self, tape: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
        let w = tape.constant(W);
        Ok(((w / x).sum(), x.sum() - 6.0))
    }
}

#[test]
fn mma_solves_a_budget_problem_to_its_closed_form() {
    let mmapy = [
        0.7581296479061914,
        1.5162592958879637,
        2.274388944065735,
        0.3790648246446339,
        1.0721572301193916,
    ];
    let root_sum: f64 = W.iter().map(|w| w.sqrt()).sum();
    let settings = MmaSettings {
        max_iters: 60,
        kkt_tolerance: 0.0,
        ..MmaSettings::new([0.1], [10.0])
    };
    let out = minimize_constrained(Reciprocal, [1.0; 5], &settings, None).unwrap();
    for j in 0..5 {
        let exact = 6.0 * W[j].sqrt() / root_sum;
        assert!((out.params[j] - exact).abs() < 1e-6, "{out:?}");
        assert!((out.params[j] - mmapy[j]).abs() < 1e-6, "{out:?}");
    }
    assert!(
        out.constraints[0] <= 1e-6 && out.constraints[0] > -1e-5,
        "{out:?}"
    );
    // The first step equals mmapy's (later ones oscillate between the bounds and amplify
    // rounding, as mmapy's do).
    let first = minimize_constrained(
        Reciprocal,
        [1.0; 5],
        &MmaSettings {
            max_iters: 1,
            ..settings
        },
        None,
    )
    .unwrap();
    let mmapy_first = [
        0.10000030841192219,
        1.5569000825331714,
        2.5102646061311655,
        0.10000006919339141,
        0.7036105579295239,
    ];
    for (ours, theirs) in first.params.iter().zip(mmapy_first) {
        assert!((ours - theirs).abs() < 1e-9, "{first:?}");
    }
}

#[test]
fn mma_refuses_bad_bounds_and_passes_model_errors_through() {
    let bad = MmaSettings::new([0.0, 1.0, 0.0], [5.0, 1.0, 5.0]);
    assert!(matches!(
        minimize_constrained(Toy, [4.0, 3.0, 2.0], &bad, None),
        Err(Error::InvalidArgument { .. })
    ));
    let wrong_len = MmaSettings::new([0.0, 0.0], [5.0, 5.0]);
    assert!(matches!(
        minimize_constrained(Toy, [4.0, 3.0, 2.0], &wrong_len, None),
        Err(Error::InvalidArgument { .. })
    ));
    /// ln(x − 1) is not finite at the lower bound 0.
    struct Broken;
    impl ConstrainedObjective for Broken {
        fn evaluate<'t>(&self, _t: &'t Tape, x: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
            Ok(((x - 1.0).ln().sum(), x.sum()))
        }
    }
    let err = minimize_constrained(Broken, [0.5, 0.5], &MmaSettings::new([0.0], [1.0]), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFinite { .. } | Error::NonFiniteOperation { .. }
        ),
        "{err:?}"
    );
}

/// The augmented-Lagrangian driver (L-BFGS inside) reaches the toy problem's optimum too.
#[test]
fn augmented_lagrangian_agrees_with_mma_on_the_toy_problem() {
    use sparsegrad::optim::{augmented_lagrangian, AugmentedLagrangian};
    let out = augmented_lagrangian(&Toy, [4.0, 3.0, 2.0], &AugmentedLagrangian::new(0)).unwrap();
    assert!(out.converged && out.violation <= 1e-8, "{out:?}");
    for (a, b) in out.params.iter().zip(TOY_OPTIMUM) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
    assert!(
        out.multipliers.iter().all(|&m| m > 0.0),
        "both spheres active: {out:?}"
    );
}

/// Minimize (x − 2)² + (y − 1)² subject to x = 2y and x + y ≤ 2: the optimum (4/3, 2/3) with
/// λ = 2/9 and μ = 10/9 (from ∇f + λ∇h + μ∇g = 0).
#[test]
fn augmented_lagrangian_meets_equalities_and_inequalities_with_their_multipliers() {
    use sparsegrad::optim::{augmented_lagrangian, AugmentedLagrangian};
    struct Mixed;
    impl ConstrainedObjective for Mixed {
        fn evaluate<'t>(&self, tape: &'t Tape, p: Var<'t>) -> Result<(Var<'t>, Var<'t>)> {
            let f = (p - tape.constant([2.0, 1.0])).square().sum();
            let h = (p * tape.constant([1.0, -2.0])).sum();
            let g = p.sum() - 2.0;
            Ok((f, tape.concat_columns(&[h, g])))
        }
    }
    let out = augmented_lagrangian(&Mixed, [0.0, 0.0], &AugmentedLagrangian::new(1)).unwrap();
    assert!(out.converged, "{out:?}");
    assert!(
        (out.params[0] - 4.0 / 3.0).abs() < 1e-7 && (out.params[1] - 2.0 / 3.0).abs() < 1e-7,
        "{out:?}"
    );
    assert!((out.multipliers[0] - 2.0 / 9.0).abs() < 1e-6, "{out:?}");
    assert!((out.multipliers[1] - 10.0 / 9.0).abs() < 1e-6, "{out:?}");
    // Bad settings are errors.
    assert!(matches!(
        augmented_lagrangian(&Mixed, [0.0, 0.0], &AugmentedLagrangian::new(3)),
        Err(Error::InvalidArgument { .. })
    ));
}

/// `minimize` takes a borrowed objective (one that holds references to local data), so a driver
/// can run it round after round without cloning the model.
#[test]
fn minimize_accepts_a_borrowed_objective() {
    use sparsegrad::optim::{minimize, ArgminProblem, Objective, Settings};
    struct Towards<'a>(&'a [f64]);
    impl Objective for Towards<'_> {
        fn loss<'t>(&self, tape: &'t Tape, p: Var<'t>) -> Result<Var<'t>> {
            Ok((p - tape.constant(self.0)).square().sum())
        }
    }
    let target = vec![1.0, -2.0, 0.5];
    let objective = Towards(&target);
    for _ in 0..2 {
        let out = minimize(
            ArgminProblem::new(&objective),
            vec![0.0; 3],
            &Settings::new(Default::default(), 50),
            None,
        )
        .unwrap();
        assert!(
            out.params
                .iter()
                .zip(&target)
                .all(|(a, b)| (a - b).abs() < 1e-8),
            "{out:?}"
        );
    }
}

/// The topology objective's gradient (density filter, Heaviside projection, SIMP, Dirichlet
/// solve, compliance) against finite differences, for the MBB beam and the heat sink; the
/// filter rows are normalized and the volume constraint is linear in x.
#[test]
fn topology_gradients_match_differences() {
    use sparsegrad::check;
    use sparsegrad::problems::topology::TopologyProblem;
    for mut problem in [
        TopologyProblem::mbb(12, 4, 0.5, 1.5).unwrap(),
        TopologyProblem::heat_sink(8, 0.4, 1.5).unwrap(),
    ] {
        problem.projection = Some((2.0, 0.5));
        let n = problem.grid.n_elements();
        let x0: Vec<f64> = (0..n)
            .map(|e| 0.3 + 0.4 * ((e * 7 % 11) as f64 / 11.0))
            .collect();
        let r = check::gradient(
            |_t, x| problem.compliance(x),
            &x0[..],
            &check::Options::default(),
        )
        .unwrap();
        assert!(
            r.passed && r.max_relative_error < 1e-6 && r.inconclusive == 0,
            "{r:?}"
        );
        let r = check::gradient(
            |_t, x| {
                let (_, g) = ConstrainedObjective::evaluate(&problem, x.tape(), x)?;
                Ok(g.sum())
            },
            &x0[..],
            &check::Options::default(),
        )
        .unwrap();
        assert!(r.passed, "{r:?}");
        // Filter rows sum to one: a uniform design is unchanged (the projection maps 0.5 to 0.5).
        let uniform = problem.physical_density_of(&vec![0.5; n]).unwrap();
        assert!(uniform.iter().all(|d| (d - 0.5).abs() < 1e-14));
    }
}

/// Bad topology inputs are errors, never a dense filter or a panic; an augmented-Lagrangian run
/// of zero rounds reports the start.
#[test]
fn topology_and_driver_inputs_are_checked() {
    use sparsegrad::optim::{augmented_lagrangian, AugmentedLagrangian};
    use sparsegrad::problems::topology::{Grid, TopologyProblem};
    for radius in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
        assert!(
            matches!(
                TopologyProblem::mbb(12, 4, 0.5, radius),
                Err(Error::InvalidArgument { .. })
            ),
            "radius {radius}"
        );
    }
    for volume in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(
            TopologyProblem::heat_sink(8, volume, 1.5),
            Err(Error::InvalidArgument { .. })
        ));
    }
    assert!(matches!(
        Grid::new(0, 4),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Grid::new(1 << 20, 1 << 20),
        Err(Error::InvalidArgument { .. })
    ));
    // A radius up to the diagonal + 1 is accepted: every row then averages the whole grid.
    let wide = Grid::new(4, 3).unwrap().density_filter(6.0).unwrap();
    assert_eq!(wide.nnz(), 12 * 12);
    let none = AugmentedLagrangian {
        max_rounds: 0,
        ..AugmentedLagrangian::new(0)
    };
    let out = augmented_lagrangian(&Toy, [4.0, 3.0, 2.0], &none).unwrap();
    assert_eq!((out.rounds, out.objective), (0, 29.0));
    assert!(!out.converged && out.params == vec![4.0, 3.0, 2.0]);
}
