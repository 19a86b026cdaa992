//! The `construct` fuzz harness (`fuzz/fuzz_targets/construct.rs` and the regression-corpus test
//! in tests/engine/fuzz_corpus.rs include this file): builds structures, assemblies and Matrix Market matrices from arbitrary bytes
//! and solves and differentiates with arbitrary values and solvers. Every outcome must be a value
//! or an `Error` — a panic is a bug.

use std::sync::Arc;

use nalgebra::DMatrix;

use super::bytes::Bytes;
use sparsegrad::{
    matrix_market, Assembly, Factorizer, Implementation, Iterative, Preconditioner, Result, Solver,
    Structure, Tape,
};

/// Floats for this harness: mostly well-behaved values, sometimes raw bits (NaN, ±Inf,
/// subnormals, huge).
trait Floats {
    fn float(&mut self) -> f64;
}

impl Floats for Bytes<'_> {
    fn float(&mut self) -> f64 {
        match self.byte() % 8 {
            0 => {
                let mut raw = [0u8; 8];
                for r in &mut raw {
                    *r = self.byte();
                }
                f64::from_le_bytes(raw)
            }
            1 => 0.0,
            2 => -(f64::from(self.byte()) / 16.0),
            _ => f64::from(self.byte()) / 16.0 + f64::from(self.byte()) / 4096.0,
        }
    }
}

fn solver(bytes: &mut Bytes<'_>) -> Box<dyn Factorizer> {
    let tol = [1e-12, 1e-6, 0.0, 1.0][bytes.below(4)];
    let its = bytes.below(40);
    let pre = [
        Preconditioner::None,
        Preconditioner::Jacobi,
        Preconditioner::Ic0,
        Preconditioner::Ilu0,
    ][bytes.below(4)];
    match bytes.below(10) {
        0 => Box::new(Solver::cholesky()),
        1 => Box::new(Solver::cholesky().with_implementation(Implementation::Reference)),
        2 => Box::new(Solver::ldlt()),
        3 => Box::new(Solver::lu()),
        4 => Box::new(Solver::lu().with_residual_check(None)),
        5 => Box::new(Iterative::cg(tol, its).with_preconditioner(pre)),
        6 => Box::new(Iterative::minres(tol, its).with_preconditioner(pre)),
        7 => Box::new(Iterative::bicgstab(tol, its).with_preconditioner(pre)),
        8 => Box::new(Iterative::gmres(bytes.below(6), tol, its).with_preconditioner(pre)),
        _ => Box::new(Iterative::cg(tol, its).with_warm_start()),
    }
}

/// Solves with `values` on `structure`, differentiates a loss, and reads everything back.
fn solve_and_differentiate(
    structure: &Arc<Structure>,
    values: &[f64],
    bytes: &mut Bytes<'_>,
) -> Result<()> {
    let n = structure.nrows();
    let k = bytes.below(4);
    let b = DMatrix::from_fn(n, k, |_, _| bytes.float());
    let solver = solver(bytes);
    let tape = Tape::new();
    let a = tape.sparse_var(structure, values)?;
    let bv = tape.var(b);
    let x = tape.solve(a, bv, solver.as_ref())?;
    let loss = x.sum_squares();
    let g = tape.backward(loss)?;
    let _ = (g.try_wrt(a)?, g.try_wrt(bv)?, tape.solve_info(x)?);
    Ok(())
}

fn from_arrays(bytes: &mut Bytes<'_>) -> Result<()> {
    let (nrows, ncols) = (bytes.below(9), bytes.below(9));
    let col_ptr: Vec<usize> = (0..bytes.below(12)).map(|_| bytes.below(20)).collect();
    let row_idx: Vec<usize> = (0..bytes.below(24)).map(|_| bytes.below(10)).collect();
    let s = Structure::new(nrows, ncols, col_ptr, row_idx, bytes.symmetry())?;
    let values: Vec<f64> = (0..s.nnz() + bytes.below(2))
        .map(|_| bytes.float())
        .collect();
    solve_and_differentiate(&s, &values, bytes)
}

fn from_pairs(bytes: &mut Bytes<'_>) -> Result<()> {
    let (nrows, ncols) = (bytes.below(9), bytes.below(9));
    let pairs: Vec<(usize, usize)> = (0..bytes.below(30))
        .map(|_| (bytes.below(10), bytes.below(10)))
        .collect();
    let (s, _) = Structure::from_pairs(nrows, ncols, &pairs, bytes.symmetry())?;
    let values: Vec<f64> = (0..s.nnz()).map(|_| bytes.float()).collect();
    solve_and_differentiate(&s, &values, bytes)
}

fn from_assembly(bytes: &mut Bytes<'_>) -> Result<()> {
    let n = bytes.below(9);
    let params = bytes.below(6);
    let mut builder = Assembly::builder(n, n, params).symmetry(bytes.symmetry());
    for _ in 0..bytes.below(30) {
        if bytes.below(3) == 0 {
            builder.push_constant(bytes.below(10), bytes.below(10), bytes.float());
        } else {
            builder.push_entry(
                bytes.below(10),
                bytes.below(10),
                bytes.below(8),
                bytes.float(),
            );
        }
    }
    let asm = builder.build()?;
    let p: Vec<f64> = (0..params + bytes.below(2))
        .map(|_| bytes.float())
        .collect();
    let tape = Tape::new();
    let pv = tape.var(DMatrix::from_column_slice(p.len(), 1, &p));
    let a = tape.assemble(&asm, pv)?;
    let values = asm.values(&p)?;
    let _ = a.value()?;
    solve_and_differentiate(asm.structure(), &values, bytes)
}

fn from_matrix_market(bytes: &mut Bytes<'_>) -> Result<()> {
    let text = String::from_utf8_lossy(bytes.rest()).into_owned();
    matrix_market::MatrixMarket::parse(&text, "fuzz.mtx").map(|_| ())
}

/// Runs one fuzz input. Returns the library's verdict (`Ok` or an `Error`); panics only on a bug.
pub fn exercise(data: &[u8]) -> Result<()> {
    let mut bytes = Bytes::new(data);
    match bytes.below(4) {
        0 => from_arrays(&mut bytes),
        1 => from_pairs(&mut bytes),
        2 => from_assembly(&mut bytes),
        _ => from_matrix_market(&mut bytes),
    }
}
