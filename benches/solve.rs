//! Value + gradient of ‖A(θ)⁻¹ b‖² for A = I + L(θ) of the cyclic chain with 2^16 nodes (the seed
//! benchmark) and of the 256×256 grid, cold
//! (a new Structure each call: symbolic + numeric) and warm (same Structure: numeric refactor only),
//! with 1 and 16 right-hand sides, next to the limit: one numeric factorization and one forward
//! plus one adjoint solve through `Solver::factorize`, without the tape.
//!
//! A second group times a batch of 64 grid systems (k = 128) through `batch::solve_batch` plus
//! their gradients, on a 1-thread and a 2-thread rayon pool: the parallel speedup.
//!
//! A third group times one Hessian-vector product against one gradient (grid 512², grid3 48³):
//! value + gradient, and value + gradient + H·v (`Tape::hvp`, no factorization), warm.
//!
//! A fourth group times log det A(θ) with its gradient (selected inversion) and the selected
//! inversion alone against the numeric factorization alone (grid 512², grid3 48³, the 32³
//! hexahedral elasticity block).
//!
//! A fifth group times the cold `Auto` analysis alone (AMD, and METIS nested dissection where
//! CHOLMOD's rule wants it, each with faer's symbolic factorization) of a fresh structure on a
//! 1-thread pool (one after the other) and a 2-thread pool (concurrently): grid3 48³, elastic3 32³.
//!
//! A sixth group times the numeric factorization in f64, mixed (f32 factor, f64 refinement) and
//! f32, and a warm value + gradient in f64 and mixed: grid3 16³–48³, elastic3 32³.
//!
//! `cargo bench --bench solve`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nalgebra::DMatrix;
use sparsegrad::problems::elasticity::ElasticBlock;
use sparsegrad::problems::graph::{chain_edges, grid3_edges, grid_edges, laplacian_assembly};
use sparsegrad::{batch, Assembly, Solver, Structure, Tape};

fn value_and_gradient(asm: &Assembly, theta: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let tape = Tape::new();
    let th = tape.var(theta.clone());
    let a = tape.assemble(asm, th).expect("assemble");
    let x = tape
        .solve(a, tape.constant(b.clone()), &Solver::cholesky())
        .expect("solve");
    let loss = x.sum_squares();
    let g = tape.backward(loss).expect("backward");
    g.wrt(th)[0]
}

fn bench(c: &mut Criterion) {
    let k = 256;
    let cases = [
        ("chain_65536", 1 << 16, chain_edges(1 << 16).unwrap()),
        ("grid_256", k * k, grid_edges(k).unwrap()),
    ];
    for (name, n, edges) in cases {
        let build = || laplacian_assembly(n, &edges, 1.0).expect("valid graph");
        let theta = DMatrix::from_fn(edges.len(), 1, |i, _| {
            0.5 + ((i * 7919) % 1000) as f64 / 1000.0
        });
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for k in [1usize, 16] {
            let b = DMatrix::from_fn(n, k, |i, c| ((i * 31 + c * 17) % 101) as f64 / 101.0);
            let warm = build();
            group.bench_function(BenchmarkId::new("cold", k), |bench| {
                bench.iter(|| value_and_gradient(&build(), &theta, &b))
            });
            group.bench_function(BenchmarkId::new("warm", k), |bench| {
                bench.iter(|| value_and_gradient(&warm, &theta, &b))
            });
            let values = warm.values(theta.as_slice()).expect("values");
            group.bench_function(BenchmarkId::new("limit", k), |bench| {
                bench.iter(|| {
                    let f = Solver::cholesky()
                        .factorize(warm.structure(), &values)
                        .expect("factor");
                    let mut x = b.clone();
                    f.solve_in_place(&mut x).expect("solve");
                    f.solve_transpose_in_place(&mut x).expect("adjoint");
                    x[0]
                })
            });
        }
        group.finish();
    }
}

fn bench_batch(c: &mut Criterion) {
    let k = 128;
    let edges = grid_edges(k).unwrap();
    let asm = laplacian_assembly(k * k, &edges, 1.0).expect("valid grid");
    let values: Vec<Vec<f64>> = (0..64)
        .map(|d| {
            let theta: Vec<f64> = (0..edges.len())
                .map(|e| 1.5 + 0.5 * ((e + 13 * d) as f64).sin())
                .collect();
            asm.values(&theta).expect("values")
        })
        .collect();
    let b = DMatrix::from_fn(k * k, 1, |i, _| 1.0 + 0.5 * (i as f64).cos());
    let mut group = c.benchmark_group("batch64_grid128");
    group.sample_size(10);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        group.bench_function(BenchmarkId::new("threads", threads), |bench| {
            bench.iter(|| {
                pool.install(|| {
                    let out = batch::solve_batch(
                        asm.structure(),
                        &values,
                        std::slice::from_ref(&b),
                        &Solver::cholesky(),
                    )
                    .expect("batch");
                    let upstream: Vec<DMatrix<f64>> =
                        out.solutions().iter().map(|x| x * 2.0).collect();
                    out.gradients(&upstream).expect("gradients")[0].0[0]
                })
            })
        });
    }
    group.finish();
}

/// One gradient against one gradient + Hessian-vector product, on the same warm structure.
fn bench_hvp(c: &mut Criterion) {
    let cases = [
        ("hvp_grid_512", 512 * 512, grid_edges(512).unwrap()),
        ("hvp_grid3_48", 48 * 48 * 48, grid3_edges(48).unwrap()),
    ];
    for (name, n, edges) in cases {
        let asm = laplacian_assembly(n, &edges, 1.0).expect("valid graph");
        let theta = DMatrix::from_fn(edges.len(), 1, |i, _| {
            0.5 + ((i * 7919) % 1000) as f64 / 1000.0
        });
        let v = DMatrix::from_fn(edges.len(), 1, |i, _| ((i * 31) % 17) as f64 / 17.0 - 0.5);
        let b = DMatrix::from_fn(n, 1, |i, _| ((i * 31) % 101) as f64 / 101.0);
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        group.bench_function("gradient", |bench| {
            bench.iter(|| value_and_gradient(&asm, &theta, &b))
        });
        group.bench_function("gradient_and_hvp", |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let th = tape.var(theta.clone());
                let a = tape.assemble(&asm, th).expect("assemble");
                let x = tape
                    .solve(a, tape.constant(b.clone()), &Solver::cholesky())
                    .expect("solve");
                let (g, hv) = tape.hvp(x.sum_squares(), &[(th, v.clone())]).expect("hvp");
                g.wrt(th)[0] + hv.wrt(th)[0]
            })
        });
        group.finish();
    }
}

/// log det A(θ) and its gradient (selected inversion on the kept factor) against the numeric
/// factorization alone, on the same warm structure.
/// I + L(θ) of a graph with θ_i = 0.5 + (7919 i mod 1000)/1000.
fn graph_case(n: usize, edges: Vec<(usize, usize)>) -> (Assembly, DMatrix<f64>) {
    let asm = laplacian_assembly(n, &edges, 1.0).expect("valid graph");
    let theta = DMatrix::from_fn(edges.len(), 1, |i, _| {
        0.5 + ((i * 7919) % 1000) as f64 / 1000.0
    });
    (asm, theta)
}

/// 32³ hexahedra clamped at x = 0: 104 544 unknowns; θ_e = 1.5 + 0.5 sin(e).
fn elastic_case() -> (Assembly, DMatrix<f64>) {
    let asm = ElasticBlock::cube(32).assembly(0.3).expect("elastic block");
    let theta = DMatrix::from_fn(asm.n_params(), 1, |e, _| 1.5 + 0.5 * (e as f64).sin());
    (asm, theta)
}

fn bench_logdet(c: &mut Criterion) {
    let graph = graph_case;
    let elastic = elastic_case();
    let cases = [
        (
            "logdet_grid_512",
            graph(512 * 512, grid_edges(512).unwrap()),
        ),
        (
            "logdet_grid3_48",
            graph(48 * 48 * 48, grid3_edges(48).unwrap()),
        ),
        ("logdet_elastic3_32", elastic),
    ];
    for (name, (asm, theta)) in cases {
        let values = asm.values(theta.as_slice()).expect("values");
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        group.bench_function("factor", |bench| {
            bench.iter(|| {
                Solver::cholesky()
                    .factorize(asm.structure(), &values)
                    .expect("factor")
                    .dim()
            })
        });
        let factor = Solver::cholesky()
            .factorize(asm.structure(), &values)
            .expect("factor");
        group.bench_function("selected_inverse", |bench| {
            bench.iter(|| {
                factor
                    .selected_inverse(asm.structure())
                    .expect("selected inverse")[0]
            })
        });
        drop(factor);
        group.bench_function("logdet_and_gradient", |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let th = tape.var(theta.clone());
                let a = tape.assemble(&asm, th).expect("assemble");
                let ld = a.logdet(&Solver::cholesky()).expect("logdet");
                tape.backward(ld).expect("backward").wrt(th)[0]
            })
        });
        group.finish();
    }
}

/// The cold `Auto` analysis of a fresh copy of a structure, on 1 and 2 threads.
fn bench_analysis(c: &mut Criterion) {
    let grid3 = laplacian_assembly(48 * 48 * 48, &grid3_edges(48).unwrap(), 1.0).expect("grid3");
    let elastic = ElasticBlock::cube(32).assembly(0.3).expect("elastic3");
    for (name, asm) in [
        ("analysis_grid3_48", grid3),
        ("analysis_elastic3_32", elastic),
    ] {
        let s = asm.structure();
        let fresh = || {
            Structure::new(
                s.nrows(),
                s.ncols(),
                s.col_ptr().to_vec(),
                s.row_idx().to_vec(),
                s.symmetry(),
            )
            .expect("structure")
        };
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            group.bench_function(BenchmarkId::new("threads", threads), |bench| {
                bench.iter(|| {
                    let structure = fresh();
                    pool.install(|| Solver::cholesky().analysis_report(&structure))
                        .expect("analysis")
                        .prediction
                        .flops
                })
            });
        }
        group.finish();
    }
}

/// Mixed and single precision against f64 (issue 33): the numeric factorization alone in each
/// precision, and a warm value + gradient through the tape (one factorization, the forward and
/// adjoint solves — refined in f64 for `Mixed`), on grids 3D of growing size (where `Auto`'s
/// threshold comes from) and the 32³ elasticity block.
fn bench_precision(c: &mut Criterion) {
    use sparsegrad::Precision;
    let graph = |k: usize| graph_case(k * k * k, grid3_edges(k).unwrap());
    let elastic = elastic_case();
    let cases = [
        ("precision_grid3_16", graph(16)),
        ("precision_grid3_24", graph(24)),
        ("precision_grid3_32", graph(32)),
        ("precision_grid3_48", graph(48)),
        ("precision_elastic3_32", elastic),
    ];
    for (name, (asm, theta)) in cases {
        let values = asm.values(theta.as_slice()).expect("values");
        let n = asm.structure().nrows();
        let b = DMatrix::from_fn(n, 1, |i, _| ((i * 31) % 101) as f64 / 101.0);
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for (label, precision) in [
            ("f64", Precision::F64),
            ("mixed", Precision::Mixed),
            ("f32", Precision::F32),
        ] {
            let solver = Solver::cholesky().with_precision(precision);
            group.bench_function(BenchmarkId::new("factor", label), |bench| {
                bench.iter(|| {
                    solver
                        .factorize(asm.structure(), &values)
                        .expect("factor")
                        .dim()
                })
            });
            if precision == Precision::F32 {
                continue;
            }
            group.bench_function(BenchmarkId::new("value_and_gradient", label), |bench| {
                bench.iter(|| {
                    let tape = Tape::new();
                    let th = tape.var(theta.clone());
                    let a = tape.assemble(&asm, th).expect("assemble");
                    let x = tape
                        .solve(a, tape.constant(b.clone()), &solver)
                        .expect("solve");
                    let loss = x.sum_squares();
                    tape.backward(loss).expect("backward").wrt(th)[0]
                })
            });
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    bench,
    bench_batch,
    bench_hvp,
    bench_logdet,
    bench_analysis,
    bench_precision
);
criterion_main!(benches);
