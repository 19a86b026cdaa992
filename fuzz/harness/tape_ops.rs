//! The `tape_ops` fuzz harness (`fuzz/fuzz_targets/tape_ops.rs` and the regression-corpus test in
//! tests/engine/fuzz_corpus.rs include this file). It interprets the bytes as a program: a random
//! sequence of tape operations on two live tapes — random shapes, indices (including huge ones
//! and ones whose sums overflow), column slices, scalars, NaN/±∞ values, variables of the other
//! tape, sparse inputs, assemblies, products, solves, Dirichlet elimination, backward and
//! gradients — plus the public helpers that take lengths and indices. It uses only the public
//! API. Every outcome must be a value or an `Error`: a panic, abort or sanitizer report is a bug.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::bytes::Bytes;
use sparsegrad::problems::mesh::TriMesh;
use sparsegrad::solve::node::accumulate_outer;
use sparsegrad::solve::{condition_estimate, norm1};
use sparsegrad::tape::{BinaryOp, UnaryOp};
use sparsegrad::{Assembly, Dirichlet, Factorizer, Iterative, Solver, Structure, Tape, Var};

/// Floats, matrices and index lists for this harness (special values often).
trait Values {
    fn float(&mut self) -> f64;
    fn matrix(&mut self) -> DMatrix<f64>;
    fn indices(&mut self) -> Vec<usize>;
}

impl Values for Bytes<'_> {
    fn float(&mut self) -> f64 {
        match self.byte() % 10 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => 0.0,
            4 => f64::MAX,
            5 => 1e-300,
            6 => -(f64::from(self.byte()) / 8.0),
            _ => f64::from(self.byte()) / 16.0 + 0.5,
        }
    }
    fn matrix(&mut self) -> DMatrix<f64> {
        let (r, c) = (self.below(5), self.below(4));
        DMatrix::from_fn(r, c, |_, _| self.float())
    }
    fn indices(&mut self) -> Vec<usize> {
        (0..self.below(6)).map(|_| self.size()).collect()
    }
}

fn unary(bytes: &mut Bytes<'_>) -> UnaryOp {
    match bytes.below(12) {
        0 => UnaryOp::Neg,
        1 => UnaryOp::Scale(bytes.float()),
        2 => UnaryOp::Offset(bytes.float()),
        3 => UnaryOp::Exp,
        4 => UnaryOp::Ln,
        5 => UnaryOp::Sqrt,
        6 => UnaryOp::Powf(bytes.float()),
        7 => UnaryOp::Square,
        8 => UnaryOp::Sigmoid,
        9 => UnaryOp::Softplus,
        10 => UnaryOp::Sin,
        _ => UnaryOp::Cos,
    }
}

fn binary(bytes: &mut Bytes<'_>) -> BinaryOp {
    [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][bytes.below(4)]
}

fn solver(bytes: &mut Bytes<'_>) -> Box<dyn Factorizer> {
    match bytes.below(8) {
        0 => Box::new(Solver::cholesky()),
        1 => Box::new(Solver::ldlt()),
        2 => Box::new(Solver::lu()),
        3 => Box::new(Solver::auto().with_condition_limit(1e10)),
        4 => Box::new(Iterative::cg(1e-10, bytes.below(30))),
        5 => Box::new(Iterative::bicgstab(1e-10, bytes.below(30))),
        6 => Box::new(Iterative::minres(1e-10, bytes.below(30))),
        _ => Box::new(Iterative::gmres(bytes.size(), 1e-10, bytes.below(30)).with_warm_start()),
    }
}

/// A small random structure (n ≤ 5) with its values.
fn structure(bytes: &mut Bytes<'_>) -> Option<(Arc<Structure>, Vec<f64>)> {
    let (nrows, ncols) = (bytes.below(6), bytes.below(6));
    let pairs: Vec<(usize, usize)> = (0..bytes.below(12))
        .map(|_| (bytes.below(6), bytes.below(6)))
        .collect();
    let (s, _) = Structure::from_pairs(nrows, ncols, &pairs, bytes.symmetry()).ok()?;
    let values = (0..s.nnz()).map(|_| bytes.float()).collect();
    Some((s, values))
}

fn assembly(bytes: &mut Bytes<'_>) -> Option<Assembly> {
    let n = bytes.below(6);
    let params = bytes.below(5);
    let mut b = Assembly::builder(n, n, params).symmetry(bytes.symmetry());
    for _ in 0..bytes.below(12) {
        if bytes.below(4) == 0 {
            b.push_constant(bytes.below(7), bytes.below(7), bytes.float());
        } else {
            b.push_entry(
                bytes.below(7),
                bytes.below(7),
                bytes.below(6),
                bytes.float(),
            );
        }
    }
    b.build().ok()
}

/// Reads everything a variable offers; none of it may panic.
fn inspect(v: Var<'_>) {
    let _ = (
        v.shape(),
        v.is_sparse(),
        v.structure(),
        v.error(),
        v.index(),
    );
    let _ = v.value();
    let _ = v.scalar();
    let _ = v.with_value(|m| m.sum());
}

/// The public helpers that take lengths and indices, with random (often wrong) lengths.
fn helpers(bytes: &mut Bytes<'_>) {
    if let Some((s, values)) = structure(bytes) {
        let left = DMatrix::from_fn(bytes.below(6), bytes.below(3), |_, _| bytes.float());
        let right = DMatrix::from_fn(bytes.below(6), bytes.below(3), |_, _| bytes.float());
        let mut out = vec![0.0; bytes.below(8)];
        let _ = accumulate_outer(&s, &left, &right, bytes.float(), &mut out);
        let _ = norm1(&s, &values[..values.len().min(bytes.below(8))]);
        if let Ok(f) = Solver::lu().factorize(&s, &values) {
            let cut = values.len().min(bytes.below(8));
            let _ = condition_estimate(&s, &values[..cut], f.as_ref());
        }
    }
    if let Some(asm) = assembly(bytes) {
        let _ = asm.terms(bytes.size()).map(|t| t.count());
        let v_bar = vec![bytes.float(); bytes.below(8)];
        let mut p_bar = vec![0.0; bytes.below(6)];
        let _ = asm.adjoint_into(&v_bar, &mut p_bar);
        let p = vec![bytes.float(); bytes.below(6)];
        let _ = asm.values(&p);
        let _ = asm.to_csc(&p);
        let fixed = bytes.indices();
        let _ = Dirichlet::new(&asm, &fixed);
    }
    let vertices: Vec<[f64; 2]> = (0..bytes.below(5))
        .map(|_| [bytes.float(), bytes.float()])
        .collect();
    let triangles: Vec<[usize; 3]> = (0..bytes.below(4))
        .map(|_| [bytes.below(6), bytes.below(6), bytes.size()])
        .collect();
    let mesh = TriMesh {
        vertices,
        triangles,
        grid: Vec::new(),
        grid_size: 0,
    };
    let _ = mesh.triangle_geometry(bytes.size());
    let _ = (
        mesh.areas(),
        mesh.lumped_mass(),
        mesh.anisotropic_stiffness(),
    );
    let _ = TriMesh::unit_square(bytes.size().min(1 << 40));
    // Dimensions and counts straight from the bytes.
    let (n, params) = (bytes.size(), bytes.size());
    let _ = Assembly::builder(n, n, params)
        .entry(bytes.below(3), bytes.below(3), bytes.below(3), 1.0)
        .build();
    let _ = Structure::from_pairs(n, bytes.size(), &[(bytes.below(3), 0)], bytes.symmetry());
    let _ = sparsegrad::problems::graph::grid_edges(bytes.size());
    let _ = sparsegrad::problems::graph::chain_edges(
        bytes.size().max(1 << 40) * usize::from(bytes.byte() & 1),
    );
    let _ = sparsegrad::problems::graph::laplacian_assembly(
        bytes.size(),
        &[(bytes.size(), bytes.below(3))],
        bytes.float(),
    );
    let _ = sparsegrad::problems::cantilever::Cantilever::new(bytes.size(), bytes.size(), 0.1);
}

/// Number of operation kinds the interpreter chooses from.
pub const OPS: usize = 20;

/// Runs one fuzz input; returns how often each operation kind ran. Panics only on a bug.
pub fn exercise(data: &[u8]) -> [usize; OPS] {
    let mut ran = [0usize; OPS];
    let mut bytes = Bytes::new(data);
    let tapes = [Tape::new(), Tape::new()];
    let mut vars: Vec<Var<'_>> = Vec::new();
    let mut steps = 0;
    while !bytes.done() && steps < 64 {
        steps += 1;
        let tape = &tapes[bytes.below(2)];
        let pick = |bytes: &mut Bytes<'_>| -> Option<Var<'_>> {
            (!vars.is_empty()).then(|| vars[bytes.below(vars.len())])
        };
        let op = bytes.below(OPS);
        ran[op] += 1;
        let made: Option<Var<'_>> = match op {
            0 => Some(tape.var(bytes.matrix())),
            1 => Some(tape.constant(bytes.matrix())),
            2 => Some(tape.var_scalar(bytes.float())),
            3 => pick(&mut bytes).map(|v| v.unary(unary(&mut bytes))),
            4 => match (pick(&mut bytes), pick(&mut bytes)) {
                (Some(a), Some(b)) => Some(a.binary(binary(&mut bytes), b)),
                _ => None,
            },
            5 => pick(&mut bytes).map(|v| match bytes.below(4) {
                0 => v.sum(),
                1 => v.sum_squares(),
                2 => v.softmax(),
                _ => v.logsumexp(),
            }),
            6 => match (pick(&mut bytes), pick(&mut bytes)) {
                (Some(a), Some(b)) => Some(a.dot(b)),
                _ => None,
            },
            7 => pick(&mut bytes).map(|v| v.gather(&bytes.indices())),
            8 => pick(&mut bytes).map(|v| {
                let index = bytes.indices();
                v.scatter_add(&index, bytes.size())
            }),
            9 => pick(&mut bytes).map(|v| v.columns(bytes.size(), bytes.size())),
            10 => {
                let parts: Vec<Var<'_>> = (0..bytes.below(4))
                    .filter_map(|_| pick(&mut bytes))
                    .collect();
                Some(tape.concat_columns(&parts))
            }
            11 => structure(&mut bytes).and_then(|(s, values)| {
                let v = tape.sparse_var(&s, &values).ok()?;
                Some(match pick(&mut bytes) {
                    Some(other) if bytes.below(2) == 0 => tape.with_structure(other, &s),
                    _ => v,
                })
            }),
            12 => assembly(&mut bytes).and_then(|asm| {
                let p = pick(&mut bytes)?;
                tape.assemble(&asm, p).ok()
            }),
            13 => match (pick(&mut bytes), pick(&mut bytes)) {
                (Some(a), Some(x)) => tape.spmul(a, x).ok(),
                _ => None,
            },
            14 => match (pick(&mut bytes), pick(&mut bytes)) {
                (Some(a), Some(b)) => {
                    let solver = solver(&mut bytes);
                    let x = tape.solve(a, b, solver.as_ref()).ok();
                    if let Some(x) = x {
                        let _ = tape.solve_info(x);
                    }
                    x
                }
                _ => None,
            },
            15 => {
                if let Some(loss) = pick(&mut bytes) {
                    if let Ok(g) = tape.backward(loss) {
                        for &v in &vars {
                            let _ = g.try_wrt(v);
                        }
                    }
                }
                None
            }
            16 => assembly(&mut bytes).and_then(|asm| {
                let d = Dirichlet::new(&asm, &bytes.indices()).ok()?;
                let (p, f, g) = (pick(&mut bytes)?, pick(&mut bytes)?, pick(&mut bytes)?);
                match bytes.below(3) {
                    0 => d.rhs(p, f, g).ok(),
                    1 => Some(d.expand(f, g)),
                    _ => d.solve(p, f, g, solver(&mut bytes).as_ref()).ok(),
                }
            }),
            17 => pick(&mut bytes).map(|v| v.values()),
            18 => {
                helpers(&mut bytes);
                None
            }
            _ => {
                // A variable of a tape that is then dropped: its id must never match a new one.
                let old = Tape::new();
                let x = old.var_scalar(bytes.float());
                let loss = x.square();
                let g = old.backward(loss).ok();
                drop(old);
                let fresh = Tape::new();
                let y = fresh.var_scalar(1.0);
                if let Some(g) = g {
                    assert!(
                        g.try_wrt(y).is_err(),
                        "gradients of a dropped tape answered for a new one"
                    );
                }
                None
            }
        };
        if let Some(v) = made {
            inspect(v);
            vars.push(v);
        }
    }
    for &v in &vars {
        inspect(v);
    }
    ran
}
