//! Forward mode (`Tape::jvp`): every tape operation's tangent against central differences (a
//! table with one row per operation; an operation without a forward rule does not compile, as
//! `Operation::forward` is required), and the solve node's tangent against dense forward mode
//! for LU, one-triangle Cholesky, LDLᵀ, multi-RHS and an assembly map — with no factorization.

use nalgebra::DMatrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparsegrad::{Assembly, Error, Result, Solver, Symmetry, Tape, Var};

/// An operation under test: builds its output from its inputs on a tape.
type Build = Box<dyn for<'t> Fn(&'t Tape, &[Var<'t>]) -> Result<Var<'t>>>;

struct Case {
    name: &'static str,
    /// Input shapes; every input is positive (0.5 … 1.5), so ln, sqrt and ÷ are defined.
    inputs: Vec<(usize, usize)>,
    build: Build,
}

fn case(
    name: &'static str,
    inputs: &[(usize, usize)],
    build: impl for<'t> Fn(&'t Tape, &[Var<'t>]) -> Result<Var<'t>> + 'static,
) -> Case {
    Case {
        name,
        inputs: inputs.to_vec(),
        build: Box::new(build),
    }
}

/// A(p): 4 × 4, general (tridiagonal plus a corner), entries linear in 6 parameters, no constants.
fn general_assembly() -> Assembly {
    let mut b = Assembly::builder(4, 4, 6);
    for i in 0..4 {
        b = b.entry(i, i, i % 6, 3.0).entry(i, i, 4, 1.0);
        if i + 1 < 4 {
            b = b.entry(i, i + 1, (i + 1) % 6, 0.7).entry(i + 1, i, 5, -0.4);
        }
    }
    b.entry(3, 0, 2, 0.3).build().unwrap()
}

/// A(p): 4 × 4 symmetric, lower triangle stored, positive definite for positive p.
fn spd_lower_assembly() -> Assembly {
    let mut b = Assembly::builder(4, 4, 6).symmetry(Symmetry::Lower);
    for i in 0..4 {
        b = b.entry(i, i, i, 4.0).entry(i, i, 5, 1.0);
        if i + 1 < 4 {
            b = b.entry(i + 1, i, 4, -0.5);
        }
    }
    b.build().unwrap()
}

/// A(p): 4 × 4 symmetric indefinite (diagonal signs +, −, +, −), both triangles stored.
fn indefinite_assembly() -> Assembly {
    let mut b = Assembly::builder(4, 4, 6).symmetry(Symmetry::Full);
    for i in 0..4 {
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        b = b.entry(i, i, i, 3.0 * sign);
        if i + 1 < 4 {
            b = b.entry(i + 1, i, 4, 0.6).entry(i, i + 1, 4, 0.6);
        }
    }
    b.build().unwrap()
}

fn cases() -> Vec<Case> {
    let (v, m, s) = ((5, 1), (4, 3), (1, 1));
    let lu = Solver::lu();
    vec![
        case("neg", &[v], |_, x| Ok(-x[0])),
        case("scale", &[v], |_, x| Ok(x[0] * 1.7)),
        case("offset", &[v], |_, x| Ok(x[0] + 0.3)),
        case("exp", &[v], |_, x| Ok(x[0].exp())),
        case("ln", &[v], |_, x| Ok(x[0].ln())),
        case("sqrt", &[v], |_, x| Ok(x[0].sqrt())),
        case("powf", &[v], |_, x| Ok(x[0].powf(2.5))),
        case("square", &[v], |_, x| Ok(x[0].square())),
        case("sigmoid", &[v], |_, x| Ok(x[0].sigmoid())),
        case("softplus", &[v], |_, x| Ok(x[0].softplus())),
        case("sin", &[v], |_, x| Ok(x[0].sin())),
        case("cos", &[v], |_, x| Ok(x[0].cos())),
        case("add", &[m, m], |_, x| Ok(x[0] + x[1])),
        case("sub", &[m, m], |_, x| Ok(x[0] - x[1])),
        case("mul", &[m, m], |_, x| Ok(x[0] * x[1])),
        case("div", &[m, m], |_, x| Ok(x[0] / x[1])),
        case("mul (1×1 broadcast)", &[s, m], |_, x| Ok(x[0] * x[1])),
        case("div (1×1 broadcast)", &[m, s], |_, x| Ok(x[0] / x[1])),
        case("div (n×1 column broadcast)", &[(4, 1), m], |_, x| {
            Ok(x[0] / x[1])
        }),
        case("mul (n×1 column broadcast)", &[m, (4, 1)], |_, x| {
            Ok(x[0] * x[1])
        }),
        case("sub (1×k row broadcast)", &[(1, 3), m], |_, x| {
            Ok(x[0] - x[1])
        }),
        case("sum", &[m], |_, x| Ok(x[0].sum())),
        case("sum_squares", &[m], |_, x| Ok(x[0].sum_squares())),
        case("softmax", &[m], |_, x| Ok(x[0].softmax())),
        case("logsumexp", &[m], |_, x| Ok(x[0].logsumexp())),
        case("dot", &[m, m], |_, x| Ok(x[0].dot(x[1]))),
        case("gather", &[m], |_, x| Ok(x[0].gather(&[2, 0, 2, 3]))),
        case("scatter_add", &[m], |_, x| {
            Ok(x[0].scatter_add(&[1, 0, 1, 4], 6))
        }),
        case("columns", &[m], |_, x| Ok(x[0].columns(1, 2))),
        case("concat_columns", &[m, v], |t, x| {
            Ok(t.concat_columns(&[x[0].gather(&[0, 1, 2, 3, 0]), x[1]]))
        }),
        case("with_structure + values", &[(4, 1)], |t, x| {
            let s = sparsegrad::Structure::new(
                2,
                2,
                vec![0, 2, 4],
                vec![0, 1, 0, 1],
                Symmetry::General,
            )?;
            Ok(t.with_structure(x[0], &s).values())
        }),
        case("assemble", &[(6, 1)], |t, x| {
            Ok(t.assemble(&general_assembly(), x[0])?.values())
        }),
        case("spmul", &[(6, 1), m], |t, x| {
            t.spmul(t.assemble(&general_assembly(), x[0])?, x[1])
        }),
        case("spmul (one triangle)", &[(6, 1), m], |t, x| {
            t.spmul(t.assemble(&spd_lower_assembly(), x[0])?, x[1])
        }),
        case("solve (LU)", &[(6, 1), m], move |t, x| {
            t.solve(t.assemble(&general_assembly(), x[0])?, x[1], &lu)
        }),
        case("solve (Cholesky, one triangle)", &[(6, 1), m], |t, x| {
            t.solve(
                t.assemble(&spd_lower_assembly(), x[0])?,
                x[1],
                &Solver::cholesky(),
            )
        }),
        case("solve (LDLᵀ, indefinite)", &[(6, 1), m], |t, x| {
            t.solve(
                t.assemble(&indefinite_assembly(), x[0])?,
                x[1],
                &Solver::ldlt(),
            )
        }),
        case(
            "factor: solve, then solve_transpose (LU)",
            &[(6, 1), m],
            |t, x| {
                let f = t.factor(t.assemble(&general_assembly(), x[0])?, &Solver::lu())?;
                let y = f.solve(x[1])?;
                f.solve_transpose(y.sin())
            },
        ),
        case(
            "factor: solve_transpose (Cholesky, one triangle)",
            &[(6, 1), m],
            |t, x| {
                let f = t.factor(
                    t.assemble(&spd_lower_assembly(), x[0])?,
                    &Solver::cholesky(),
                )?;
                f.solve_transpose(x[1])
            },
        ),
        case("solve then a nonlinear loss", &[(6, 1), m], |t, x| {
            let y = t.solve(t.assemble(&general_assembly(), x[0])?, x[1], &Solver::lu())?;
            Ok((y.sin() * y).logsumexp())
        }),
    ]
}

fn inputs(case: &Case, rng: &mut StdRng) -> Vec<DMatrix<f64>> {
    case.inputs
        .iter()
        .map(|&(r, c)| DMatrix::from_fn(r, c, |_, _| rng.random_range(0.5..1.5)))
        .collect()
}

fn evaluate(case: &Case, values: &[DMatrix<f64>]) -> DMatrix<f64> {
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = values.iter().map(|v| tape.var(v.clone())).collect();
    (case.build)(&tape, &vars).unwrap().value().unwrap()
}

#[test]
fn every_operation_matches_central_differences() {
    let mut rng = StdRng::seed_from_u64(30);
    for case in cases() {
        let x = inputs(&case, &mut rng);
        let t: Vec<DMatrix<f64>> = x
            .iter()
            .map(|v| DMatrix::from_fn(v.nrows(), v.ncols(), |_, _| rng.random_range(-1.0..1.0)))
            .collect();
        let tape = Tape::new();
        let vars: Vec<Var<'_>> = x.iter().map(|v| tape.var(v.clone())).collect();
        let out = (case.build)(&tape, &vars).unwrap();
        let seeds: Vec<_> = vars.iter().copied().zip(t.iter().cloned()).collect();
        let jvp = tape.jvp(&seeds, &[out]).unwrap().remove(0);
        let h = 1e-6;
        let shifted = |sign: f64| -> Vec<DMatrix<f64>> {
            x.iter().zip(&t).map(|(v, d)| v + d * (sign * h)).collect()
        };
        let fd = (evaluate(&case, &shifted(1.0)) - evaluate(&case, &shifted(-1.0))) / (2.0 * h);
        let scale = fd.amax().max(1.0);
        let err = (&jvp - &fd).amax() / scale;
        assert!(
            err <= 1e-7,
            "{}: JVP off by {err:e} (scale {scale:e})",
            case.name
        );
        assert!(jvp.amax() > 0.0, "{}: zero tangent", case.name);
        // Linearity: the tangent along 2ṫ is twice the tangent along ṫ, exactly up to rounding.
        let seeds2: Vec<_> = vars
            .iter()
            .copied()
            .zip(t.iter().map(|d| d * 2.0))
            .collect();
        let jvp2 = tape.jvp(&seeds2, &[out]).unwrap().remove(0);
        assert!(
            (&jvp2 - &jvp * 2.0).amax() <= 1e-12 * jvp.amax().max(1e-300),
            "{}",
            case.name
        );
    }
}

/// Ẋ = A⁻¹(Ḃ − Ȧ X) by dense LU, for the three solve kinds and several right-hand sides.
#[test]
fn solve_tangent_matches_dense_forward_mode_without_factoring() {
    let mut rng = StdRng::seed_from_u64(31);
    let kinds: [(&str, Assembly, Solver); 3] = [
        ("LU", general_assembly(), Solver::lu()),
        (
            "Cholesky, one triangle",
            spd_lower_assembly(),
            Solver::cholesky(),
        ),
        ("LDLᵀ", indefinite_assembly(), Solver::ldlt()),
    ];
    for (name, asm, solver) in kinds {
        let p: Vec<f64> = (0..6).map(|_| rng.random_range(0.5..1.5)).collect();
        let dp: Vec<f64> = (0..6).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b = DMatrix::from_fn(4, 3, |_, _| rng.random_range(-1.0..1.0));
        let db = DMatrix::from_fn(4, 3, |_, _| rng.random_range(-1.0..1.0));
        let tape = Tape::new();
        let pv = tape.var(DMatrix::from_column_slice(6, 1, &p));
        let bv = tape.var(b.clone());
        let a = tape.assemble(&asm, pv).unwrap();
        let x = tape.solve(a, bv, &solver).unwrap();
        let before = asm.structure().numeric_factorizations();
        let dx = tape
            .jvp(
                &[
                    (pv, DMatrix::from_column_slice(6, 1, &dp)),
                    (bv, db.clone()),
                ],
                &[x],
            )
            .unwrap()
            .remove(0);
        assert_eq!(
            asm.structure().numeric_factorizations(),
            before,
            "{name}: factored again"
        );
        let dense = |q: &[f64]| DMatrix::from(&asm.to_csc_full(q).unwrap());
        let (a_d, da_d) = (dense(&p), dense(&dp));
        let x_d = a_d.clone().lu().solve(&b).unwrap();
        let dx_d = a_d.lu().solve(&(&db - &da_d * &x_d)).unwrap();
        let err = (&dx - &dx_d).amax() / dx_d.amax();
        assert!(err <= 1e-11, "{name}: {err:e}");
    }
}

#[test]
fn jvp_refuses_bad_seeds() {
    let tape = Tape::new();
    let x = tape.var(DMatrix::from_element(3, 1, 1.0));
    let y = x.exp().sum();
    let e = tape.jvp(&[(x, DMatrix::zeros(2, 1))], &[y]).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    let e = tape
        .jvp(&[(x, DMatrix::from_element(3, 1, f64::NAN))], &[y])
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e:?}");
    let other = Tape::new();
    let z = other.var(DMatrix::from_element(3, 1, 1.0));
    let e = tape.jvp(&[(z, DMatrix::zeros(3, 1))], &[y]).unwrap_err();
    assert!(matches!(e, Error::ForeignVar { .. }), "{e:?}");
    // A variable with no seed has a zero tangent; an unseeded output is zero.
    let c = tape.var(DMatrix::from_element(3, 1, 2.0)).sum();
    let t = tape
        .jvp(&[(x, DMatrix::from_element(3, 1, 1.0))], &[y, c])
        .unwrap();
    assert!((t[0][0] - 3.0 * 1f64.exp()).abs() < 1e-14 && t[1][0] == 0.0);
}

/// loss = Σ sin(out) + ½‖out‖²: nonlinear in every output entry, so H·v exercises each op's
/// second-order terms.
fn scalar_loss<'t>(out: Var<'t>) -> Var<'t> {
    out.sin().sum() + out.sum_squares() * 0.5
}

fn gradient(case: &Case, values: &[DMatrix<f64>]) -> Vec<DMatrix<f64>> {
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = values.iter().map(|v| tape.var(v.clone())).collect();
    let loss = scalar_loss((case.build)(&tape, &vars).unwrap());
    let g = tape.backward(loss).unwrap();
    vars.iter().map(|&v| g.wrt(v).clone()).collect()
}

/// Forward-over-reverse H·v for a scalar loss through every operation, against central
/// differences of the gradient along v; the gradient it returns is `backward`'s.
#[test]
fn every_operation_hessian_vector_matches_differences_of_the_gradient() {
    let mut rng = StdRng::seed_from_u64(32);
    for case in cases() {
        let x = inputs(&case, &mut rng);
        let v: Vec<DMatrix<f64>> = x
            .iter()
            .map(|m| DMatrix::from_fn(m.nrows(), m.ncols(), |_, _| rng.random_range(-1.0..1.0)))
            .collect();
        let tape = Tape::new();
        let vars: Vec<Var<'_>> = x.iter().map(|m| tape.var(m.clone())).collect();
        let loss = scalar_loss((case.build)(&tape, &vars).unwrap());
        let seeds: Vec<_> = vars.iter().copied().zip(v.iter().cloned()).collect();
        let (g, hv) = tape.hvp(loss, &seeds).unwrap();
        let reference = tape.backward(loss).unwrap();
        let h = 1e-5;
        let shifted = |sign: f64| -> Vec<DMatrix<f64>> {
            x.iter().zip(&v).map(|(m, d)| m + d * (sign * h)).collect()
        };
        let (up, down) = (
            gradient(&case, &shifted(1.0)),
            gradient(&case, &shifted(-1.0)),
        );
        for (k, &var) in vars.iter().enumerate() {
            assert_eq!(
                g.wrt(var),
                reference.wrt(var),
                "{}: gradient differs",
                case.name
            );
            let fd = (&up[k] - &down[k]) / (2.0 * h);
            let scale = fd.amax().max(1.0);
            let err = (hv.wrt(var) - &fd).amax() / scale;
            assert!(
                err <= 1e-6,
                "{} input {k}: H·v off by {err:e} (scale {scale:e})",
                case.name
            );
        }
    }
}

/// H·v through assembly → solve (LU, one-triangle Cholesky, LDLᵀ; 3 right-hand sides) runs no
/// factorization and matches differences of the gradient.
#[test]
fn hessian_vector_through_the_solve_reuses_the_factorization() {
    let mut rng = StdRng::seed_from_u64(33);
    for (name, asm, solver) in [
        ("LU", general_assembly(), Solver::lu()),
        (
            "Cholesky, one triangle",
            spd_lower_assembly(),
            Solver::cholesky(),
        ),
        ("LDLᵀ", indefinite_assembly(), Solver::ldlt()),
    ] {
        let p: Vec<f64> = (0..6).map(|_| rng.random_range(0.5..1.5)).collect();
        let dp = DMatrix::from_fn(6, 1, |_, _| rng.random_range(-1.0..1.0));
        let b = DMatrix::from_fn(4, 3, |_, _| rng.random_range(-1.0..1.0));
        let grad_at = |q: &DMatrix<f64>| {
            let tape = Tape::new();
            let pv = tape.var(q.clone());
            let x = tape
                .solve(
                    tape.assemble(&asm, pv).unwrap(),
                    tape.constant(b.clone()),
                    &solver,
                )
                .unwrap();
            let loss = x.sin().sum() + x.sum_squares() * 0.5;
            tape.backward(loss).unwrap().wrt(pv).clone()
        };
        let tape = Tape::new();
        let p0 = DMatrix::from_column_slice(6, 1, &p);
        let pv = tape.var(p0.clone());
        let x = tape
            .solve(
                tape.assemble(&asm, pv).unwrap(),
                tape.constant(b.clone()),
                &solver,
            )
            .unwrap();
        let loss = x.sin().sum() + x.sum_squares() * 0.5;
        let before = asm.structure().numeric_factorizations();
        let (_, hv) = tape.hvp(loss, &[(pv, dp.clone())]).unwrap();
        assert_eq!(
            asm.structure().numeric_factorizations(),
            before,
            "{name}: factored again"
        );
        let h = 1e-5;
        let fd = (grad_at(&(&p0 + &dp * h)) - grad_at(&(&p0 - &dp * h))) / (2.0 * h);
        let err = (hv.wrt(pv) - &fd).amax() / fd.amax();
        assert!(err <= 1e-7, "{name}: {err:e}");
    }
}

/// `check::hessian_vector` on the cantilever's objective, compliance(k(φ)) with k = k_min +
/// softmax(φ)·c (a 10 × 5 spring lattice, a random design and direction; Dirichlet elimination
/// and a Cholesky solve inside): H·v matches differences of the gradient to 1e-6.
#[test]
fn hessian_vector_check_on_the_cantilever() {
    use sparsegrad::check;
    use sparsegrad::problems::cantilever::Cantilever;
    let model = Cantilever::new(10, 5, 1e-3).unwrap();
    let mut rng = StdRng::seed_from_u64(34);
    let k0: Vec<f64> = model
        .uniform_design()
        .iter()
        .map(|phi| phi + rng.random_range(-0.3..0.3))
        .collect();
    let v: Vec<f64> = (0..k0.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
    let r = check::hessian_vector(
        |_, phi| model.compliance(model.stiffness(phi)),
        &k0[..],
        &v[..],
        &check::Options::default(),
    )
    .unwrap();
    assert!(r.passed && r.max_relative_error <= 1e-6, "{r:?}");
    assert!(r.hessian_vector.amax() > 0.0);
    // v = 0: H·0 = 0 exactly, and the check passes without dividing by zero.
    let zero = vec![0.0; k0.len()];
    let r0 = check::hessian_vector(
        |_, phi| model.compliance(model.stiffness(phi)),
        &k0[..],
        &zero[..],
        &check::Options::default(),
    )
    .unwrap();
    assert!(r0.passed && r0.hessian_vector.amax() == 0.0, "{r0:?}");
    let e = check::hessian_vector(
        |_, phi| model.compliance(model.stiffness(phi)),
        &k0[..],
        &v[..3],
        &check::Options::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
}

/// H·v of L(p) = ½‖A(p)⁻¹B‖² against the same quantity computed densely, independently of the
/// tape: with A_k = ∂A/∂p_k (dense), X = A⁻¹B, Λ = A⁻ᵀX, Ȧ = Σ v_k A_k, Ẋ = −A⁻¹ȦX and
/// Λ̇ = A⁻ᵀ(Ẋ − ȦᵀΛ): (H v)_k = −tr(Λ̇ᵀA_kX) − tr(ΛᵀA_kẊ). ≤ 1e-10 for LU, one-triangle
/// Cholesky (both triangles of A_k from the stored one) and LDLᵀ, 3 right-hand sides.
#[test]
fn hessian_vector_matches_dense_second_order() {
    let mut rng = StdRng::seed_from_u64(35);
    for (name, asm, solver) in [
        ("LU", general_assembly(), Solver::lu()),
        (
            "Cholesky, one triangle",
            spd_lower_assembly(),
            Solver::cholesky(),
        ),
        ("LDLᵀ", indefinite_assembly(), Solver::ldlt()),
    ] {
        let m = asm.n_params();
        let p: Vec<f64> = (0..m).map(|_| rng.random_range(0.5..1.5)).collect();
        let v: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b = DMatrix::from_fn(4, 3, |_, _| rng.random_range(-1.0..1.0));
        let dense = |q: &[f64]| DMatrix::from(&asm.to_csc_full(q).unwrap());
        let a = dense(&p);
        let a_k: Vec<DMatrix<f64>> = (0..m)
            .map(|k| {
                let mut e = vec![0.0; m];
                e[k] = 1.0;
                dense(&e)
            })
            .collect();
        let a_dot = dense(&v);
        let lu = a.clone().lu();
        let lu_t = a.transpose().lu();
        let x = lu.solve(&b).unwrap();
        let lambda = lu_t.solve(&x).unwrap();
        let x_dot = -lu.solve(&(&a_dot * &x)).unwrap();
        let lambda_dot = lu_t.solve(&(&x_dot - a_dot.transpose() * &lambda)).unwrap();
        let expected = DMatrix::from_fn(m, 1, |k, _| {
            -(lambda_dot.transpose() * &a_k[k] * &x).trace()
                - (lambda.transpose() * &a_k[k] * &x_dot).trace()
        });
        let tape = Tape::new();
        let pv = tape.var(DMatrix::from_column_slice(m, 1, &p));
        let xv = tape
            .solve(
                tape.assemble(&asm, pv).unwrap(),
                tape.constant(b.clone()),
                &solver,
            )
            .unwrap();
        let (_, hv) = tape
            .hvp(
                xv.sum_squares() * 0.5,
                &[(pv, DMatrix::from_column_slice(m, 1, &v))],
            )
            .unwrap();
        let err = (hv.wrt(pv) - &expected).amax() / expected.amax();
        assert!(err <= 1e-10, "{name}: {err:e}");
    }
}

/// A non-finite gradient inside `hvp` is the error `backward` gives (naming the operation), and
/// a non-scalar loss is refused the same way.
#[test]
fn hessian_vector_reports_what_backward_reports() {
    let tape = Tape::new();
    let x = tape.var(DMatrix::from_column_slice(2, 1, &[0.0, 4.0]));
    let y = tape.var(DMatrix::from_column_slice(2, 1, &[1.0, 2.0]));
    let loss = x.sqrt().sum() + y.sum_squares();
    // Seeding y only: the forward tangents are finite, x's gradient is not.
    let seeds = [(y, DMatrix::from_element(2, 1, 1.0))];
    let from_backward = tape.backward(loss).unwrap_err();
    let from_hvp = tape.hvp(loss, &seeds).unwrap_err();
    assert!(
        matches!(
            from_hvp,
            Error::NonFiniteOperation {
                op: "sqrt",
                pass: "gradient",
                ..
            }
        ),
        "{from_hvp:?}"
    );
    assert_eq!(format!("{from_hvp}"), format!("{from_backward}"));
    let e = tape.hvp(x.sqrt(), &seeds).unwrap_err();
    assert!(matches!(e, Error::NotScalar { rows: 2, cols: 1 }), "{e:?}");
}

/// H·v through a Dirichlet elimination with prescribed values (assembly → spmul → solve →
/// scatter, 2 load cases) and through a Krylov solve (CG): the product is symmetric
/// (wᵀ(H v) = vᵀ(H w), an exact identity, to 1e-12), matches differences of the gradient to
/// 1e-7, and CG's product equals the direct solver's to its tolerance.
#[test]
fn hessian_vector_through_dirichlet_and_krylov() {
    use sparsegrad::{Dirichlet, Iterative};
    let mut rng = StdRng::seed_from_u64(36);
    let asm = spd_lower_assembly();
    let pinned = Dirichlet::new(&asm, &[0]).unwrap();
    let f = DMatrix::from_fn(4, 2, |_, _| rng.random_range(-1.0..1.0));
    let g = DMatrix::from_row_slice(1, 2, &[0.4, -0.3]);
    let p0 = DMatrix::from_fn(6, 1, |_, _| rng.random_range(0.5..1.5));
    let (v, w) = (
        DMatrix::from_fn(6, 1, |_, _| rng.random_range(-1.0..1.0)),
        DMatrix::from_fn(6, 1, |_, _| rng.random_range(-1.0..1.0)),
    );
    let cg = Iterative::cg(1e-14, 1000);
    let direct = Solver::cholesky();
    let run = |p: &DMatrix<f64>, dir: &DMatrix<f64>, krylov: bool| {
        let tape = Tape::new();
        let pv = tape.var(p.clone());
        let (fv, gv) = (tape.constant(f.clone()), tape.constant(g.clone()));
        let u = if krylov {
            pinned.solve(pv, fv, gv, &cg)
        } else {
            pinned.solve(pv, fv, gv, &direct)
        }
        .unwrap();
        let loss = u.sin().sum() + u.sum_squares() * 0.5;
        let (grad, hv) = tape.hvp(loss, &[(pv, dir.clone())]).unwrap();
        (grad.wrt(pv).clone(), hv.wrt(pv).clone())
    };
    let (_, hv) = run(&p0, &v, false);
    let (_, hw) = run(&p0, &w, false);
    let (a, b) = (w.dot(&hv), v.dot(&hw));
    assert!((a - b).abs() <= 1e-12 * a.abs().max(b.abs()), "{a} vs {b}");
    let h = 1e-5;
    let fd = (run(&(&p0 + &v * h), &v, false).0 - run(&(&p0 - &v * h), &v, false).0) / (2.0 * h);
    let err = (&hv - &fd).amax() / fd.amax();
    assert!(err <= 1e-7, "Dirichlet H·v vs differences: {err:e}");
    let (_, hv_cg) = run(&p0, &v, true);
    let err = (&hv_cg - &hv).amax() / hv.amax();
    assert!(err <= 1e-9, "CG H·v vs direct: {err:e}");
}

/// H·v through a Dirichlet elimination with prescribed values against dense second order: with
/// K(p) = Σ p_k K_k, free set F, fixed set C (u_C = G), u_F = K_FF⁻¹ r, r = f_F − K_FC G and
/// L = ½‖u‖²: λ = K_FF⁻ᵀ u_F, u̇ = K_FF⁻¹(ṙ − K̇_FF u_F), λ̇ = K_FF⁻ᵀ(u̇ − K̇_FFᵀ λ), and
/// (H v)_k = λ̇ᵀ(r_k − K_k,FF u_F) − λᵀ K_k,FF u̇ with r_k = −K_k,FC G. ≤ 1e-10 relative for the
/// one-triangle SPD assembly and the general one (LU), two load cases.
#[test]
fn hessian_vector_through_dirichlet_matches_dense_second_order() {
    use sparsegrad::Dirichlet;
    let mut rng = StdRng::seed_from_u64(37);
    let (free, fixed) = ([1usize, 2, 3], [0usize]);
    for (name, asm, solver) in [
        (
            "Cholesky, one triangle",
            spd_lower_assembly(),
            Solver::cholesky(),
        ),
        ("LU", general_assembly(), Solver::lu()),
    ] {
        let m = asm.n_params();
        let p: Vec<f64> = (0..m).map(|_| rng.random_range(0.5..1.5)).collect();
        let v: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..1.0)).collect();
        let f = DMatrix::from_fn(4, 2, |_, _| rng.random_range(-1.0..1.0));
        let g = DMatrix::from_row_slice(1, 2, &[0.4, -0.3]);
        let dense = |q: &[f64]| DMatrix::from(&asm.to_csc_full(q).unwrap());
        let block = |k: &DMatrix<f64>, rows: &[usize], cols: &[usize]| {
            DMatrix::from_fn(rows.len(), cols.len(), |i, j| k[(rows[i], cols[j])])
        };
        let unit = |k: usize| {
            let mut e = vec![0.0; m];
            e[k] = 1.0;
            dense(&e)
        };
        let k = dense(&p);
        let k_dot = dense(&v);
        let kff = block(&k, &free, &free);
        let r = block(&f, &free, &[0, 1]) - block(&k, &free, &fixed) * &g;
        let r_dot = -block(&k_dot, &free, &fixed) * &g;
        let (lu, lu_t) = (kff.clone().lu(), kff.transpose().lu());
        let u = lu.solve(&r).unwrap();
        let lambda = lu_t.solve(&u).unwrap();
        let kff_dot = block(&k_dot, &free, &free);
        let u_dot = lu.solve(&(&r_dot - &kff_dot * &u)).unwrap();
        let lambda_dot = lu_t
            .solve(&(&u_dot - kff_dot.transpose() * &lambda))
            .unwrap();
        let expected = DMatrix::from_fn(m, 1, |kk, _| {
            let ak = unit(kk);
            let (ak_ff, r_k) = (block(&ak, &free, &free), -block(&ak, &free, &fixed) * &g);
            (lambda_dot.transpose() * (&r_k - &ak_ff * &u)).trace()
                - (lambda.transpose() * &ak_ff * &u_dot).trace()
        });
        let pinned = Dirichlet::new(&asm, &fixed).unwrap();
        let tape = Tape::new();
        let pv = tape.var(DMatrix::from_column_slice(m, 1, &p));
        let uv = pinned
            .solve(
                pv,
                tape.constant(f.clone()),
                tape.constant(g.clone()),
                &solver,
            )
            .unwrap();
        let (_, hv) = tape
            .hvp(
                uv.sum_squares() * 0.5,
                &[(pv, DMatrix::from_column_slice(m, 1, &v))],
            )
            .unwrap();
        let err = (hv.wrt(pv) - &expected).amax() / expected.amax();
        assert!(err <= 1e-10, "{name}: {err:e}");
    }
}
