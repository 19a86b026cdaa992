//! Parallel batches: one symbolic analysis, results identical to the serial run at 1 and 2 threads.

use nalgebra::DMatrix;
use sparsegrad::problems::graph::{grid_edges, laplacian_assembly};
use sparsegrad::{batch, Assembly, Solver, Tape, Var};

fn model<'t>(
    asm: &Assembly,
    b: &DMatrix<f64>,
    tape: &'t Tape,
    theta: Var<'t>,
) -> sparsegrad::Result<Var<'t>> {
    let a = tape.assemble(asm, theta)?;
    Ok(tape
        .solve(a, tape.constant(b.clone()), &Solver::cholesky())?
        .sum_squares())
}

#[test]
fn batch_of_64_grid_problems_is_bit_identical_across_thread_counts() {
    let k = 32;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(k * k, &edges, 1.0).unwrap();
    let b = DMatrix::from_fn(k * k, 2, |i, c| {
        1.0 + 0.5 * (i as f64 + 7.0 * c as f64).cos()
    });
    let points: Vec<DMatrix<f64>> = (0..64)
        .map(|d| {
            DMatrix::from_fn(edges.len(), 1, |e, _| {
                1.5 + 0.5 * ((e + 13 * d) as f64).sin()
            })
        })
        .collect();
    let bits = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| batch::value_and_gradient(&points, |t, x| model(&asm, &b, t, x)))
            .into_iter()
            .map(|r| {
                let (l, g) = r.unwrap();
                (
                    l.to_bits(),
                    g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let one = bits(1);
    assert_eq!(bits(2), one);
    assert_eq!(asm.structure().symbolic_analyses(), 1);
    assert_eq!(asm.structure().numeric_factorizations(), 128);
    // And equal to evaluating each point on its own.
    let tape = Tape::new();
    let x = tape.var(points[17].clone());
    let loss = model(&asm, &b, &tape, x).unwrap();
    assert_eq!(loss.scalar().unwrap().to_bits(), one[17].0);
}

/// `solve_batch` on 64 grid systems with k = 128 (16 384 unknowns each): one symbolic analysis,
/// bit-identical solutions and gradients at 1 and 2 threads, and each system's gradient equal to
/// the tape's.
#[test]
fn solve_batch_of_64_grid_128_systems() {
    let k = 128;
    let n = k * k;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(n, &edges, 1.0).unwrap();
    let s = asm.structure();
    let b = DMatrix::from_fn(n, 1, |i, _| 1.0 + 0.5 * (i as f64).cos());
    let values: Vec<Vec<f64>> = (0..64)
        .map(|d| {
            let theta: Vec<f64> = (0..edges.len())
                .map(|e| 1.5 + 0.5 * ((e + 13 * d) as f64).sin())
                .collect();
            asm.values(&theta).unwrap()
        })
        .collect();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let batch =
                    batch::solve_batch(s, &values, std::slice::from_ref(&b), &Solver::cholesky())
                        .unwrap();
                // L_i = ‖X_i‖² ⇒ Ḡ_i = 2 X_i.
                let upstream: Vec<DMatrix<f64>> =
                    batch.solutions().iter().map(|x| x * 2.0).collect();
                let grads = batch.gradients(&upstream).unwrap();
                (batch.solutions().to_vec(), grads)
            })
    };
    let (x1, g1) = run(1);
    let (x2, g2) = run(2);
    assert_eq!(x1, x2);
    assert_eq!(g1, g2);
    assert_eq!(s.symbolic_analyses(), 1);
    assert_eq!(s.numeric_factorizations(), 128);
    // System 40 against the tape.
    let tape = Tape::new();
    let a = tape.sparse_var(s, &values[40]).unwrap();
    let bv = tape.var(b.clone());
    let x = tape.solve(a, bv, &Solver::cholesky()).unwrap();
    let g = tape.backward(x.sum_squares()).unwrap();
    assert_eq!(x.value().unwrap(), x1[40]);
    assert_eq!(g.wrt(a).as_slice(), g1[40].0.as_slice());
    assert_eq!(g.wrt(bv), &g1[40].1);
    // Errors: wrong count of right-hand sides.
    let two = [b.clone(), b.clone()];
    assert!(batch::solve_batch(s, &values, &two, &Solver::cholesky()).is_err());
}

/// Data-parallel shards: 8 right-hand-side shards of one graph-Laplacian model, Σ_s ‖A⁻¹B_s‖²
/// as one `sharded_sum` node. Value and gradient equal the one-tape model with all shards'
/// columns (to rounding), bit-identical at 1 and 2 threads; the node drives L-BFGS; its H·v is
/// a clear error.
#[test]
fn sharded_sum_equals_the_one_tape_model_and_drives_an_optimizer() {
    use sparsegrad::optim::{minimize, ArgminProblem, Objective, Settings};
    let k = 12;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(k * k, &edges, 1.0).unwrap();
    let shards: Vec<DMatrix<f64>> = (0..8)
        .map(|s| DMatrix::from_fn(k * k, 3, |i, c| ((i * 7 + c * 3 + s * 11) as f64).sin()))
        .collect();
    let theta0 = DMatrix::from_fn(edges.len(), 1, |e, _| 1.0 + 0.3 * (e as f64).cos());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let tape = Tape::new();
            let th = tape.var(theta0.clone());
            let loss = tape
                .sharded_sum(th, &shards, |t, x, b: &DMatrix<f64>| model(&asm, b, t, x))
                .unwrap();
            let g = tape.backward(loss).unwrap().wrt(th).clone();
            (loss.scalar().unwrap(), g)
        })
    };
    let (l1, g1) = run(1);
    let (l2, g2) = run(2);
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert!(g1
        .iter()
        .zip(g2.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // One tape, all 24 columns at once.
    let all = DMatrix::from_fn(k * k, 24, |i, c| shards[c / 3][(i, c % 3)]);
    let tape = Tape::new();
    let th = tape.var(theta0.clone());
    let loss = model(&asm, &all, &tape, th).unwrap();
    let g = tape.backward(loss).unwrap().wrt(th).clone();
    assert!(
        (loss.scalar().unwrap() - l1).abs() < 1e-12 * l1.abs(),
        "{l1} vs {}",
        loss.scalar().unwrap()
    );
    assert!((&g - &g1).amax() < 1e-12 * g.amax());
    // As an objective: recover θ* = θ0 from the solutions U_s = A(θ*)⁻¹B_s of the shards,
    // θ = exp φ, L-BFGS through argmin with data-parallel evaluations.
    let targets: Vec<(DMatrix<f64>, DMatrix<f64>)> = shards
        .iter()
        .map(|b| {
            let tape = Tape::new();
            let a = tape.assemble(&asm, tape.constant(theta0.clone())).unwrap();
            let u = tape
                .solve(a, tape.constant(b.clone()), &Solver::cholesky())
                .unwrap();
            (b.clone(), u.value().unwrap())
        })
        .collect();
    struct Recovery<'a> {
        asm: &'a Assembly,
        shards: &'a [(DMatrix<f64>, DMatrix<f64>)],
    }
    impl Objective for Recovery<'_> {
        fn loss<'t>(&self, tape: &'t Tape, phi: Var<'t>) -> sparsegrad::Result<Var<'t>> {
            tape.sharded_sum(
                phi,
                self.shards,
                |t, phi, (b, u): &(DMatrix<f64>, DMatrix<f64>)| {
                    let a = t.assemble(self.asm, phi.exp())?;
                    let x = t.solve(a, t.constant(b.clone()), &Solver::cholesky())?;
                    Ok((x - t.constant(u.clone())).sum_squares())
                },
            )
        }
    }
    let objective = Recovery {
        asm: &asm,
        shards: &targets,
    };
    let phi0 = DMatrix::zeros(edges.len(), 1);
    let f0 = {
        let tape = Tape::new();
        objective
            .loss(&tape, tape.var(phi0.clone()))
            .unwrap()
            .scalar()
            .unwrap()
    };
    let out = minimize(
        ArgminProblem::new(&objective),
        phi0,
        &Settings::new(Default::default(), 40),
        None,
    )
    .unwrap();
    assert!(
        out.loss < 1e-3 * f0,
        "{f0} → {} ({})",
        out.loss,
        out.termination
    );
    // H·v is refused, not silently wrong.
    let tape = Tape::new();
    let th = tape.var(theta0.clone());
    let loss = tape
        .sharded_sum(th, &shards[..2], |t, x, b: &DMatrix<f64>| {
            model(&asm, b, t, x)
        })
        .unwrap();
    let v = DMatrix::from_fn(edges.len(), 1, |e, _| (e as f64 * 0.37).sin());
    // Forward mode: ⟨∇L, v⟩ from the kept gradient.
    let jv = tape.jvp(&[(th, v.clone())], &[loss]).unwrap();
    let g = tape.backward(loss).unwrap().wrt(th).clone();
    assert!((jv[0][0] - g.dot(&v)).abs() < 1e-12 * g.dot(&v).abs().max(1.0));
    assert!(matches!(
        tape.hvp(loss, &[(th, v)]),
        Err(sparsegrad::Error::Unsupported { .. })
    ));
}
