//! Nonlinear equilibria (issue 32): `Tape::equilibrium`'s solution, its implicit-function
//! gradient against central differences, against differentiating through unrolled Newton
//! iterations and against closed forms; forward mode; the colored Jacobian against differences;
//! factorization and analysis counts; quadratic convergence; errors.

use std::sync::Arc;

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::tape::{colored_jacobian, residual_fn, Newton, Residual};
use sparsegrad::{Assembly, Error, Result, Solver, Structure, Symmetry, Tape, Var};

/// r_i = u_i³ + θ_i u_i − b_i with b from a chosen solution: u* is known, and
/// du_i/dθ_i = −u_i / (3u_i² + θ_i).
#[test]
fn diagonal_equilibrium_has_the_known_solution_and_derivatives() {
    let n = 5;
    let u_true: Vec<f64> = (0..n).map(|i| 0.5 + 0.3 * i as f64).collect();
    let theta: Vec<f64> = (0..n).map(|i| 1.0 + 0.7 * i as f64).collect();
    let b: Vec<f64> = (0..n)
        .map(|i| u_true[i].powi(3) + theta[i] * u_true[i])
        .collect();
    let pairs: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
    let (diag, _) = Structure::from_pairs(n, n, &pairs, Symmetry::General).unwrap();
    let bc = DMatrix::from_column_slice(n, 1, &b);
    let residual =
        residual_fn(move |t, u, p| Ok(Residual::new(u.powf(3.0) + u * p[0] - t.constant(&bc))));
    let tape = Tape::new();
    let th = tape.var(DMatrix::from_column_slice(n, 1, &theta));
    let newton = Newton::new(Solver::lu()).with_pattern(diag);
    let (u, report) = tape
        .equilibrium(&[th], &DMatrix::from_element(n, 1, 1.0), residual, &newton)
        .unwrap();
    assert_eq!(report.colors, Some(1));
    let uv = u.value().unwrap().clone();
    for i in 0..n {
        assert!((uv[i] - u_true[i]).abs() <= 1e-12, "u[{i}] = {}", uv[i]);
    }
    let w: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let loss = u.dot(tape.constant(DMatrix::from_column_slice(n, 1, &w)));
    let g = tape.backward(loss).unwrap().wrt(th).clone();
    let exact: Vec<f64> = (0..n)
        .map(|i| -u_true[i] / (3.0 * u_true[i].powi(2) + theta[i]))
        .collect();
    for i in 0..n {
        assert!(
            (g[i] - w[i] * exact[i]).abs() <= 1e-12 * (w[i] * exact[i]).abs(),
            "gradient {i}: {} vs {}",
            g[i],
            w[i] * exact[i]
        );
    }
    // Forward mode: u̇ = diag(du/dθ) θ̇.
    let theta_dot: Vec<f64> = (0..n).map(|i| (i as f64 - 1.5) * 0.4).collect();
    let u_dot = tape
        .jvp(&[(th, DMatrix::from_column_slice(n, 1, &theta_dot))], &[u])
        .unwrap()
        .remove(0);
    for i in 0..n {
        assert!((u_dot[i] - exact[i] * theta_dot[i]).abs() <= 1e-12);
    }
}

/// A cubic reaction–diffusion equilibrium on a k × k grid: r(u, θ) = A(θ) u + c u³ − f with
/// A(θ) = I + L(θ) (lower triangle, per-edge θ), and its Jacobian J = A(θ) + 3c diag(u²) on A's
/// structure.
struct ReactionDiffusion {
    asm: Arc<Assembly>,
    diag_slots: Arc<[usize]>,
    f: Arc<DMatrix<f64>>,
    c: f64,
    n: usize,
}

impl ReactionDiffusion {
    fn new(k: usize, c: f64) -> Self {
        let n = k * k;
        let asm = laplacian_assembly(n, &grid_edges(k).unwrap(), 1.0).unwrap();
        let s = asm.structure();
        let (cp, ri) = (s.col_ptr(), s.row_idx());
        let diag_slots: Vec<usize> = (0..n)
            .map(|j| (cp[j]..cp[j + 1]).find(|&e| ri[e] == j).unwrap())
            .collect();
        let f = DMatrix::from_fn(n, 1, |i, _| 2.0 + (i as f64 * 0.7).sin());
        ReactionDiffusion {
            asm: Arc::new(asm),
            diag_slots: diag_slots.into(),
            f: Arc::new(f),
            c,
            n,
        }
    }

    fn theta(&self) -> DMatrix<f64> {
        DMatrix::from_fn(self.asm.n_params(), 1, |e, _| {
            0.8 + 0.4 * (e as f64 * 1.3).cos()
        })
    }

    /// r and, with `jacobian`, J, as tape code (a `'static` closure).
    fn residual(
        &self,
        jacobian: bool,
    ) -> impl for<'s> Fn(&'s Tape, Var<'s>, &[Var<'s>]) -> Result<Residual<'s>> + Send + Sync + 'static
    {
        let (asm, slots, f, c, n) = (
            self.asm.clone(),
            self.diag_slots.clone(),
            self.f.clone(),
            self.c,
            self.n,
        );
        move |t, u, p| {
            let a = t.assemble(&asm, p[0])?;
            let r = t.spmul(a, u)? + u.powf(3.0).scale(c) - t.constant(&*f);
            if !jacobian {
                return Ok(Residual::new(r));
            }
            let _ = n;
            let diag = u
                .square()
                .scale(3.0 * c)
                .scatter_add(&slots, asm.structure().nnz());
            let j = t.with_structure(a.values() + diag, asm.structure());
            Ok(Residual::with_jacobian(r, j))
        }
    }

    /// J's pattern with full storage (for the colored Jacobian).
    fn full_pattern(&self) -> Arc<Structure> {
        let s = self.asm.structure();
        let (cp, ri) = (s.col_ptr(), s.row_idx());
        let mut pairs = Vec::new();
        for j in 0..self.n {
            for &i in &ri[cp[j]..cp[j + 1]] {
                pairs.push((i, j));
                pairs.push((j, i));
            }
        }
        Structure::from_pairs(self.n, self.n, &pairs, Symmetry::Full)
            .unwrap()
            .0
    }
}

/// Σ w ⊙ u* for the equilibrium at θ, with the supplied or the colored Jacobian.
fn loss_and_gradient(
    rd: &ReactionDiffusion,
    theta: &DMatrix<f64>,
    newton: &Newton,
    supplied: bool,
) -> (f64, DMatrix<f64>, sparsegrad::tape::NewtonReport) {
    let tape = Tape::new();
    let th = tape.var(theta);
    let (u, report) = tape
        .equilibrium(
            &[th],
            &DMatrix::zeros(rd.n, 1),
            rd.residual(supplied),
            newton,
        )
        .unwrap();
    let w = DMatrix::from_fn(rd.n, 1, |i, _| 1.0 + 0.1 * i as f64);
    let loss = u.dot(tape.constant(w)) + u.square().sum().scale(0.5);
    let value = loss.scalar().unwrap();
    let g = tape.backward(loss).unwrap().wrt(th).clone();
    (value, g, report)
}

#[test]
fn reaction_diffusion_gradient_matches_differences_and_unrolled_newton() {
    let rd = ReactionDiffusion::new(6, 0.8);
    let theta = rd.theta();
    let supplied = Newton::new(Solver::cholesky()).with_tolerance(0.0, 1e-14);
    let colored = supplied.clone().with_pattern(rd.full_pattern());
    let (value, g, report) = loss_and_gradient(&rd, &theta, &supplied, true);
    let (value_c, g_c, report_c) = loss_and_gradient(&rd, &theta, &colored, false);
    assert!((value - value_c).abs() <= 1e-13 * value.abs());
    assert!(
        (&g - &g_c).amax() <= 1e-12 * g.amax(),
        "supplied vs colored J"
    );
    let colors = report_c.colors.unwrap();
    assert!(
        (3..=9).contains(&colors),
        "{colors} colors for a 5-point stencil"
    );

    // Central differences, ≤ 1e-6 relative.
    let h = 1e-6;
    for e in [0, 7, 23, theta.nrows() - 1] {
        let mut plus = theta.clone();
        plus[e] += h;
        let mut minus = theta.clone();
        minus[e] -= h;
        let fd = (loss_and_gradient(&rd, &plus, &supplied, true).0
            - loss_and_gradient(&rd, &minus, &supplied, true).0)
            / (2.0 * h);
        assert!(
            (fd - g[e]).abs() <= 1e-6 * g.amax(),
            "θ[{e}]: implicit {} vs differences {fd}",
            g[e]
        );
        eprintln!(
            "θ[{e}]: differences off by {:e} (relative to max |g|)",
            (fd - g[e]).abs() / g.amax()
        );
    }

    // Differentiating through Newton's iterations, unrolled on the tape to convergence.
    let tape = Tape::new();
    let th = tape.var(&theta);
    let residual = rd.residual(true);
    let mut u = tape.constant(DMatrix::zeros(rd.n, 1));
    // Full steps from u₀ = 0 (Newton's first step above was damped; the undamped iteration
    // converges here too, only later).
    for _ in 0..report.iterations + 6 {
        let res = residual(&tape, u, &[th]).unwrap();
        let step = tape
            .solve(res.jacobian().unwrap(), res.r(), &Solver::cholesky())
            .unwrap();
        u = u - step;
    }
    let w = DMatrix::from_fn(rd.n, 1, |i, _| 1.0 + 0.1 * i as f64);
    let loss = u.dot(tape.constant(w)) + u.square().sum().scale(0.5);
    assert!((loss.scalar().unwrap() - value).abs() <= 1e-12 * value.abs());
    let g_unrolled = tape.backward(loss).unwrap().wrt(th).clone();
    let diff = (&g - &g_unrolled).amax() / g.amax();
    assert!(diff <= 1e-8, "implicit vs unrolled: {diff:e}");
    eprintln!(
        "reaction-diffusion 6×6: {} Newton iterations, residuals {:?}, {colors} colors, \
         implicit vs unrolled {diff:e}",
        report.iterations, report.residuals
    );
}

/// The colored Jacobian against a dense central-difference Jacobian (≤ 1e-8), with as many
/// colors as a stencil has columns, not n.
#[test]
fn colored_jacobian_matches_differences() {
    let rd = ReactionDiffusion::new(7, 1.3);
    let theta = rd.theta();
    let pattern = rd.full_pattern();
    let u = DMatrix::from_fn(rd.n, 1, |i, _| 0.3 + 0.2 * (i as f64).cos());
    let (values, colors) = colored_jacobian(
        &pattern,
        &u,
        std::slice::from_ref(&theta),
        rd.residual(false),
    )
    .unwrap();
    assert!(colors <= 9 && colors * 5 < rd.n, "{colors} colors");
    let r_at = |u: &DMatrix<f64>| {
        let tape = Tape::new();
        let res = rd.residual(false)(&tape, tape.constant(u), &[tape.constant(&theta)]).unwrap();
        res.r().value().unwrap().clone()
    };
    let h = 1e-6;
    let mut dense = DMatrix::zeros(rd.n, rd.n);
    for j in 0..rd.n {
        let (mut p, mut m) = (u.clone(), u.clone());
        p[j] += h;
        m[j] -= h;
        dense.set_column(j, &((r_at(&p) - r_at(&m)) / (2.0 * h)).column(0));
    }
    let (cp, ri) = (pattern.col_ptr(), pattern.row_idx());
    let mut stored = 0.0;
    for j in 0..rd.n {
        for k in cp[j]..cp[j + 1] {
            let err = (values[k] - dense[(ri[k], j)]).abs();
            assert!(err <= 1e-8 * dense.amax(), "J[{}, {j}]: {err:e}", ri[k]);
            stored += dense[(ri[k], j)].abs();
        }
    }
    // Nothing outside the pattern.
    assert!((dense.abs().sum() - stored).abs() <= 1e-6 * stored);
}

/// One symbolic analysis for every Newton step and every evaluation; one factorization per
/// iterate (the last kept), none in backward or forward mode; quadratic convergence.
#[test]
fn equilibrium_counts_factorizations_and_converges_quadratically() {
    let rd = ReactionDiffusion::new(8, 2.0);
    let structure = rd.asm.structure().clone();
    let newton = Newton::new(Solver::cholesky()).with_tolerance(0.0, 1e-14);
    let mut theta = rd.theta();
    for round in 0..3i32 {
        let before = structure.numeric_factorizations();
        let tape = Tape::new();
        let th = tape.var(&theta);
        let (u, report) = tape
            .equilibrium(&[th], &DMatrix::zeros(rd.n, 1), rd.residual(true), &newton)
            .unwrap();
        assert_eq!(
            structure.numeric_factorizations() - before,
            report.factorizations
        );
        assert_eq!(report.factorizations, report.iterations + 1);
        let after_solve = structure.numeric_factorizations();
        let g = tape.backward(u.sum()).unwrap();
        assert!(g.wrt(th).iter().all(|v| v.is_finite()));
        tape.jvp(&[(th, DMatrix::from_element(theta.nrows(), 1, 1.0))], &[u])
            .unwrap();
        assert_eq!(
            structure.numeric_factorizations(),
            after_solve,
            "round {round}"
        );
        assert_eq!(structure.symbolic_analyses(), 1, "round {round}");
        // Quadratic: once below 1e-2 of ‖r₀‖, each residual is at most ~ the square of the last.
        let r = &report.residuals;
        let rel: Vec<f64> = r.iter().map(|v| v / r[0]).collect();
        let mut squared = 0;
        for k in 1..rel.len() - 1 {
            if rel[k] < 1e-2 && rel[k + 1] > 1e-15 {
                assert!(rel[k + 1] <= 10.0 * rel[k] * rel[k], "{rel:?}");
                squared += 1;
            }
        }
        assert!(rel.last().unwrap() <= &1e-14, "{rel:?}");
        assert!(squared >= 1 || rel.len() <= 3, "{rel:?}");
        // A start at the solution, with J far from the identity (θ × 10^(2 round), κ up to
        // ~10⁵): converged at once (‖r‖ at rounding level), no error.
        let stiff = &theta * 100f64.powi(round);
        let first = Tape::new();
        let th1 = first.var(&stiff);
        let (u1, _) = first
            .equilibrium(&[th1], &DMatrix::zeros(rd.n, 1), rd.residual(true), &newton)
            .unwrap();
        let again = Tape::new();
        let th2 = again.var(&stiff);
        let (_, warm) = again
            .equilibrium(&[th2], &u1.value().unwrap(), rd.residual(true), &newton)
            .unwrap();
        assert!(warm.iterations <= 1, "{warm:?}");
        theta.iter_mut().for_each(|t| *t *= 1.1);
    }
}

#[test]
fn equilibrium_errors_are_clear() {
    let rd = ReactionDiffusion::new(4, 0.5);
    let theta = rd.theta();
    let run = |newton: &Newton, jacobian: bool, u0: DMatrix<f64>| {
        let tape = Tape::new();
        let th = tape.var(&theta);
        tape.equilibrium(&[th], &u0, rd.residual(jacobian), newton)
            .map(|(_, r)| r)
    };
    let zeros = DMatrix::zeros(rd.n, 1);
    // Not converged within the limit: the iteration and ‖r‖ are in the error.
    let e = run(
        &Newton::new(Solver::cholesky()).with_max_iterations(1),
        true,
        zeros.clone(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Equilibrium { iteration: 1, residual, .. } if *residual > 0.0),
        "{e:?}"
    );
    assert!(e.to_string().contains("not converged"), "{e}");
    // No Jacobian and no pattern.
    let e = run(&Newton::new(Solver::cholesky()), false, zeros.clone()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    // A non-finite u0, a u0 of the wrong shape.
    let mut bad = zeros.clone();
    bad[3] = f64::NAN;
    let e = run(&Newton::new(Solver::cholesky()), true, bad).unwrap_err();
    assert!(matches!(e, Error::NonFinite { row: 3, .. }), "{e:?}");
    let e = run(
        &Newton::new(Solver::cholesky()),
        true,
        DMatrix::zeros(rd.n + 1, 1),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");

    // A singular Jacobian: r = u² − 1 at u₀ = 0 (J = 2u = 0).
    let (diag, _) = Structure::from_pairs(2, 2, &[(0, 0), (1, 1)], Symmetry::General).unwrap();
    let tape = Tape::new();
    let p = tape.var(DMatrix::from_element(2, 1, 1.0));
    let e = tape
        .equilibrium(
            &[p],
            &DMatrix::zeros(2, 1),
            |_t, u, p| Ok(Residual::new(u.square() - p[0])),
            &Newton::new(Solver::lu()).with_pattern(diag.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::Equilibrium { iteration: 0, reason, .. } if reason.contains("factored")),
        "{e:?}"
    );
    // A residual that turns non-finite: ln(u) at u₀ = −1.
    let e = tape
        .equilibrium(
            &[p],
            &DMatrix::from_element(2, 1, -1.0),
            |_t, u, p| Ok(Residual::new(u.ln() - p[0])),
            &Newton::new(Solver::lu()).with_pattern(diag),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::Equilibrium { iteration: 0, reason, .. } if reason.contains("not finite")),
        "{e:?}"
    );
}

/// The geometrically nonlinear spring cantilevers (2D and 3D) at a large load: the compliance
/// gradient with respect to the design φ against central differences and against unrolled
/// Newton iterations (the same damped steps, then full ones); the analytic tangent stiffness
/// against the colored one; at a small load, the linear model's compliance (× load²).
#[test]
fn spring_cantilevers_gradient_matches_differences_and_unrolled_newton() {
    use sparsegrad::problems::cantilever::Cantilever;
    use sparsegrad::problems::cantilever3d::Cantilever3d;
    use sparsegrad::problems::spring_network::SpringNetwork;
    let c2 = Cantilever::new(6, 3, 1e-3).unwrap();
    let c3 = Cantilever3d::new(4, 3, 3, 1e-3).unwrap();
    let cases = [
        (
            "2D",
            SpringNetwork::cantilever(&c2, 0.12).unwrap(),
            c2.uniform_design(),
        ),
        (
            "3D",
            SpringNetwork::cantilever3d(&c3, 0.4).unwrap(),
            c3.uniform_design(),
        ),
    ];
    for (name, net, phi0) in cases {
        let net = Arc::new(net);
        let phi: Vec<f64> = phi0
            .iter()
            .enumerate()
            .map(|(e, p)| p + 0.3 * (e as f64 * 0.9).sin())
            .collect();
        let phi = DMatrix::from_column_slice(phi.len(), 1, &phi);
        let newton = Newton::new(Solver::ldlt()).with_tolerance(0.0, 1e-14);
        let compliance = |phi: &DMatrix<f64>| {
            let tape = Tape::new();
            let p = tape.var(phi);
            let c = net.compliance(net.stiffness(p), &newton).unwrap();
            let g = tape.backward(c).unwrap().wrt(p).clone();
            (c.scalar().unwrap(), g)
        };
        let (value, g) = compliance(&phi);
        let h = 1e-5;
        let mut worst: f64 = 0.0;
        for e in [0, 3, phi.nrows() / 2, phi.nrows() - 1] {
            let (mut plus, mut minus) = (phi.clone(), phi.clone());
            plus[e] += h;
            minus[e] -= h;
            let fd = (compliance(&plus).0 - compliance(&minus).0) / (2.0 * h);
            worst = worst.max((fd - g[e]).abs() / g.amax());
        }
        assert!(worst <= 1e-6, "{name}: differences {worst:e}");
        // Nine equilibria (value and 8 differences), one symbolic analysis of J's pattern.
        assert_eq!(net.jacobian_pattern().symbolic_analyses(), 1, "{name}");

        // Unrolled: the equilibrium from 0.8 u* (a start from which Newton needs several
        // steps; from zero the load needs increments), then its steps replayed on the tape.
        let tape = Tape::new();
        let p = tape.var(&phi);
        let k = net.stiffness(p);
        let zero = net.equilibrium(k, &newton).unwrap().0.value().unwrap() * 0.8;
        let (u_star, report) = tape
            .equilibrium(&[k], &zero, net.residual(true), &newton)
            .unwrap();
        let force = tape.constant(&net.force);
        let implicit = tape.backward(u_star.dot(force)).unwrap().wrt(p).clone();
        let mut u = tape.constant(&zero);
        let residual = net.residual(true);
        let steps: Vec<f64> = report.steps.iter().copied().chain([1.0; 3]).collect();
        for alpha in steps {
            let res = residual(&tape, u, &[k]).unwrap();
            let step = tape
                .solve(res.jacobian().unwrap(), res.r(), &Solver::ldlt())
                .unwrap();
            u = u - step.scale(alpha);
        }
        let unrolled_loss = u.dot(force);
        assert!((unrolled_loss.scalar().unwrap() - value).abs() <= 1e-12 * value.abs());
        let unrolled = tape.backward(unrolled_loss).unwrap().wrt(p).clone();
        let diff = (&implicit - &unrolled).amax() / implicit.amax();
        assert!(diff <= 1e-8, "{name}: implicit vs unrolled {diff:e}");
        assert!((&implicit - &g).amax() <= 1e-10 * g.amax());

        // The analytic tangent stiffness = the colored one, at u*.
        let u_at = u_star.value().unwrap().clone();
        let k_val = k.value().unwrap().clone();
        let (colored, colors) = colored_jacobian(
            &net.full_pattern(),
            &u_at,
            std::slice::from_ref(&k_val),
            net.residual(false),
        )
        .unwrap();
        let t2 = Tape::new();
        let res = net.residual(true)(&t2, t2.constant(&u_at), &[t2.constant(&k_val)]).unwrap();
        let j = res.jacobian().unwrap();
        let lower = j.structure().unwrap();
        let analytic = DMatrix::from(&lower.to_csc_full(j.value().unwrap().as_slice()).unwrap());
        let full = net.full_pattern();
        let dense_colored = DMatrix::from(&full.to_csc_full(&colored).unwrap());
        let jdiff = (&analytic - &dense_colored).amax() / analytic.amax();
        assert!(jdiff <= 1e-12, "{name}: analytic vs colored J {jdiff:e}");
        eprintln!(
            "{name} spring cantilever (n = {}): compliance {value:.6}, Newton residuals {:?} \
             (steps {:?}), {colors} colors, differences {worst:.1e}, unrolled {diff:.1e}, \
             J {jdiff:.1e}",
            net.n(),
            report.residuals,
            report.steps
        );
    }
    // A small load: the linear model's compliance × load².
    let load = 1e-4;
    let net = Arc::new(SpringNetwork::cantilever(&c2, load).unwrap());
    let k = vec![1.0; c2.springs.len()];
    let tape = Tape::new();
    let kv = tape.constant(DMatrix::from_column_slice(k.len(), 1, &k));
    let nonlinear = net.compliance(kv, &net.newton()).unwrap().scalar().unwrap() / (load * load);
    let linear = c2.compliance_of(&k).unwrap();
    assert!(
        (nonlinear - linear).abs() <= 1e-2 * linear,
        "small load: {nonlinear} vs linear {linear}"
    );
}

/// r = u³ − u − θ = E′(u) with E = u⁴/4 − u²/2 − θu has three roots for θ = 0.2; the middle one
/// (u ≈ −0.2) is a maximum of E. Newton on ‖r‖ from u₀ = 0 (J = −1 there) lands on it; with the
/// energy, the indefinite J is replaced by a shifted one and the line search descends to a
/// minimum (J(u*) > 0). The gradient du*/dθ = 1/J(u*) either way.
#[test]
fn energy_line_search_finds_a_minimum_where_newton_on_the_residual_finds_a_maximum() {
    let (one, _) = Structure::from_pairs(1, 1, &[(0, 0)], Symmetry::Lower).unwrap();
    for with_energy in [false, true] {
        let s = one.clone();
        let tape = Tape::new();
        let theta = tape.var_scalar(0.2);
        let (u, report) = tape
            .equilibrium(
                &[theta],
                &DMatrix::zeros(1, 1),
                move |t, u, p| {
                    let r = u.powf(3.0) - u - p[0];
                    let j = t.with_structure(u.square().scale(3.0).offset(-1.0), &s);
                    let res = Residual::with_jacobian(r, j);
                    Ok(if with_energy {
                        let e = u.powf(4.0).scale(0.25) - u.square().scale(0.5) - u * p[0];
                        res.with_energy(e)
                    } else {
                        res
                    })
                },
                &Newton::new(Solver::ldlt()).with_tolerance(1e-14, 0.0),
            )
            .unwrap();
        let x = u.value().unwrap()[0];
        let curvature = 3.0 * x * x - 1.0;
        assert!((x.powi(3) - x - 0.2).abs() <= 1e-14, "{x}");
        if with_energy {
            assert!(curvature > 0.0, "a minimum: {x} ({report:?})");
            assert!(report.factorizations > report.iterations + 1, "{report:?}");
        } else {
            assert!(
                curvature < 0.0 && (x + 0.2).abs() < 0.05,
                "the maximum: {x}"
            );
        }
        let g = tape.backward(u).unwrap().wrt(theta)[0];
        assert!(
            (g - 1.0 / curvature).abs() <= 1e-12 * g.abs(),
            "{g} vs {}",
            1.0 / curvature
        );
    }
}
