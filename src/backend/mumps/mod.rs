//! MUMPS over MPI: a distributed sparse direct solver behind [`Factorizer`] (feature `mpi`).
//!
//! Execution model — SPMD: every rank runs the same program, builds the same tape and calls the
//! same factorizations and solves in the same order (each one is collective). The matrix is given
//! on the host (rank 0, MUMPS's centralized input, ICNTL(18) = 0 — every rank holds the values
//! anyway); MUMPS distributes the factor — the memory that outgrows one machine — over the ranks.
//! The solution comes back on the host and is broadcast, so every rank's tape sees the same X
//! and computes the same gradients.
//!
//! Phases: the analysis (JOB = 1, ordering chosen by MUMPS among those installed) runs once per
//! [`Structure`] and is kept with its MUMPS instance on the structure; each factorization is the
//! numeric phase only (JOB = 2); solves are JOB = 3 on the kept factor, the adjoint with the
//! transposed system (ICNTL(9) = 2). Symmetric storage uses SYM = 1 (positive definite,
//! [`Mumps::new`]) or SYM = 2 ([`Mumps::symmetric_indefinite`]); general storage SYM = 0, so
//! non-symmetric gradients use the true Aᵀ; with both triangles stored ([`Symmetry::Full`]) only
//! the lower one is passed (MUMPS would add the two). MUMPS failures (INFOG(1) < 0) are [`Error`]s
//! on every rank: −10 / −6 singular, −9 / −13 … memory, the rest [`Error::Distributed`] with the
//! code.
//!
//! Input checks are collective: before every factorization and solve the ranks compare, in one
//! `MPI_Allreduce`, their verdict on their own input (shape, finite values, symmetric values), n,
//! nnz, checksums of the pattern and values, and the right-hand side's shape and checksum. If any
//! rank refused its input or the ranks disagree, every rank returns an [`Error::Distributed`]
//! before MUMPS is called — never a hang in `dmumps_c`, never the host's X for another rank's
//! system. The solve node's own checks go through [`Factorizer::agree`] for the same reason.

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    unsafe_code,
    clippy::all
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/dmumps.rs"));
}

use std::sync::{Arc, Mutex};

use mpi::topology::Communicator;
use nalgebra::DMatrix;

mod collective;

use collective::{agree, broadcast_from_host, checksum};

use crate::error::{Error, Result};
use crate::solve::{Direction, Factor, Factorization, Factorizer, Method};
use crate::sparse::{Structure, Symmetry};

/// MUMPS's JOB codes.
const JOB_INIT: i32 = -1;
const JOB_END: i32 = -2;
const JOB_ANALYSE: i32 = 1;
const JOB_FACTORIZE: i32 = 2;
const JOB_SOLVE: i32 = 3;
/// "Use the MPI_COMM_WORLD-equivalent communicator given in comm_fortran" needs PAR = 1: the host
/// takes part in the factorization.
const PAR_HOST_WORKS: i32 = 1;

/// The MUMPS factorizer for one MPI communicator (see the module docs for the execution model).
///
/// ```no_run
/// # #[cfg(feature = "mpi")] {
/// use sparsegrad::backend::mumps::Mumps;
/// let universe = mpi::initialize().unwrap();
/// let world = universe.world();
/// let mumps = Mumps::new(&world); // use it wherever a Factorizer goes: tape.solve(a, b, &mumps)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Mumps {
    /// The communicator in Fortran form (MPI_Comm_c2f), as MUMPS takes it.
    fcomm: i32,
    rank: i32,
    /// Ranks in the communicator.
    size: i32,
    /// SYM for symmetric structures: 1 (positive definite) or 2 (general symmetric).
    symmetric_sym: i32,
    last_memory: Arc<Mutex<Option<MumpsMemory>>>,
}

/// What MUMPS reported about the memory of a numeric factorization, on this rank and over all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MumpsMemory {
    /// Entries of the factors held on this rank (INFO(9)).
    pub factor_entries: u64,
    /// Entries of the factors over all ranks (INFOG(9)).
    pub factor_entries_total: u64,
    /// MB of all MUMPS data allocated for the factorization on this rank (INFO(16)).
    pub allocated_mb: u64,
    /// The largest [`MumpsMemory::allocated_mb`] over the ranks (INFOG(21)).
    pub allocated_mb_max: u64,
}

impl MumpsMemory {
    /// Bytes of this rank's factor entries (8 per entry).
    pub fn factor_bytes(&self) -> u64 {
        self.factor_entries * 8
    }
}

/// MUMPS's counters: a negative value −k means k million.
fn count(v: i32) -> u64 {
    if v < 0 {
        u64::from(v.unsigned_abs()) * 1_000_000
    } else {
        u64::from(v.unsigned_abs())
    }
}

impl Mumps {
    /// MUMPS on `comm`, with Cholesky-type factorization (SYM = 1) for symmetric structures and LU
    /// (SYM = 0) for general ones.
    pub fn new<C: Communicator>(comm: &C) -> Self {
        // SAFETY: MPI_Comm_c2f converts a valid communicator handle (owned by `comm`, alive for
        // the call) to its Fortran integer; MPI is initialized because `comm` exists.
        #[allow(unsafe_code)]
        let fcomm = unsafe { mpi::ffi::MPI_Comm_c2f(comm.as_raw()) };
        Self {
            fcomm,
            rank: comm.rank(),
            size: comm.size(),
            symmetric_sym: 1,
            last_memory: Arc::default(),
        }
    }

    /// The memory MUMPS reported for the most recent factorization made through this value (or a
    /// clone of it); `None` before the first.
    pub fn last_memory(&self) -> Option<MumpsMemory> {
        *self.last_memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// As [`Mumps::new`] but for symmetric indefinite matrices (SYM = 2, LDLᵀ with pivoting).
    pub fn symmetric_indefinite<C: Communicator>(comm: &C) -> Self {
        Self {
            symmetric_sym: 2,
            ..Self::new(comm)
        }
    }

    fn sym_for(&self, structure: &Structure) -> i32 {
        match structure.symmetry() {
            Symmetry::General => 0,
            _ => self.symmetric_sym,
        }
    }
}

/// One MUMPS instance (its control structure and the host's copies of the pattern and values the
/// structure points into).
struct Instance {
    id: Box<ffi::DMUMPS_STRUC_C>,
    irn: Vec<i32>,
    jcn: Vec<i32>,
    a: Vec<f64>,
    /// For a symmetric SYM with both triangles stored ([`Symmetry::Full`]): the stored positions
    /// of the lower triangle, the only entries MUMPS is given (it would add both).
    lower: Option<Vec<usize>>,
    rank: i32,
    size: i32,
    n: usize,
    fcomm: i32,
    sym: i32,
    host: bool,
}

// SAFETY: an Instance owns its MUMPS structure and the buffers it points into; it is only ever used
// by one thread at a time (behind a Mutex), and MUMPS keeps no thread-affine state.
#[allow(unsafe_code)]
unsafe impl Send for Instance {}

impl Instance {
    fn call(&mut self, job: i32) -> Result<()> {
        self.id.job = job;
        // SAFETY: `id` was initialized by JOB = −1 (or is being initialized now, with par, sym and
        // comm_fortran set); its pointer fields point into `irn`, `jcn`, `a` and the caller's
        // right-hand side, all alive and of the lengths given in n / nnz / lrhs·nrhs.
        #[allow(unsafe_code)]
        unsafe {
            ffi::dmumps_c(&mut *self.id);
        }
        check(&self.id, job)
    }

    /// JOB = −1 then the analysis of `structure` (1-based coordinates on the host).
    fn analysed(
        structure: &Structure,
        fcomm: i32,
        sym: i32,
        (rank, size): (i32, i32),
    ) -> Result<Self> {
        let host = rank == 0;
        let n = structure.nrows();
        let too_big = || Error::InvalidArgument {
            what: "MUMPS matrix",
            reason: format!(
                "MUMPS indexes with 32-bit integers: {n} unknowns are too many for this build"
            ),
        };
        let n32 = i32::try_from(n).map_err(|_| too_big())?;
        // SAFETY: DMUMPS_STRUC_C is plain C data (integers, floats, raw pointers) for which all-zero
        // bytes are a valid value; MUMPS initializes it in JOB = −1.
        #[allow(unsafe_code)]
        let id: Box<ffi::DMUMPS_STRUC_C> = Box::new(unsafe { std::mem::zeroed() });
        let mut inst = Instance {
            id,
            irn: Vec::new(),
            jcn: Vec::new(),
            a: Vec::new(),
            lower: None,
            rank,
            size,
            n,
            fcomm,
            sym,
            host,
        };
        inst.id.comm_fortran = fcomm;
        inst.id.par = PAR_HOST_WORKS;
        inst.id.sym = sym;
        inst.call(JOB_INIT)?;
        // Silence: no error, diagnostic or global output streams, print level 0.
        inst.id.icntl[0] = -1;
        inst.id.icntl[1] = -1;
        inst.id.icntl[2] = -1;
        inst.id.icntl[3] = 0;
        if host {
            let (cp, ri) = (structure.col_ptr(), structure.row_idx());
            // SYM = 1 / 2 takes one triangle: with both stored, pass the lower one.
            let one_triangle = sym != 0 && structure.symmetry() == Symmetry::Full;
            let mut lower = Vec::new();
            inst.irn.reserve(ri.len());
            inst.jcn.reserve(ri.len());
            for j in 0..structure.ncols() {
                for (k, &i) in ri.iter().enumerate().take(cp[j + 1]).skip(cp[j]) {
                    if one_triangle && i < j {
                        continue;
                    }
                    if one_triangle {
                        lower.push(k);
                    }
                    inst.irn.push(i32::try_from(i + 1).map_err(|_| too_big())?);
                    inst.jcn.push(i32::try_from(j + 1).map_err(|_| too_big())?);
                }
            }
            inst.a = vec![0.0; inst.irn.len()];
            inst.lower = one_triangle.then_some(lower);
            inst.id.n = n32;
            inst.id.nnz = inst.irn.len() as i64;
            inst.id.irn = inst.irn.as_mut_ptr();
            inst.id.jcn = inst.jcn.as_mut_ptr();
            inst.id.a = inst.a.as_mut_ptr();
        }
        inst.call(JOB_ANALYSE)?;
        Ok(inst)
    }

    fn factorize(&mut self, values: &[f64]) -> Result<()> {
        if self.host {
            match &self.lower {
                Some(lower) => {
                    for (a, &k) in self.a.iter_mut().zip(lower) {
                        *a = values[k];
                    }
                }
                None => self.a.copy_from_slice(values),
            }
            self.id.a = self.a.as_mut_ptr();
        }
        self.call(JOB_FACTORIZE)
    }

    /// rhs ← A⁻¹ rhs (or A⁻ᵀ rhs), solved on the host and broadcast to every rank.
    fn solve(&mut self, rhs: &mut DMatrix<f64>, direction: Direction) -> Result<()> {
        let transpose = direction == Direction::Transpose;
        let local = if rhs.nrows() != self.n {
            Err(Error::ShapeMismatch {
                op: "MUMPS solve (right-hand side rows vs n)",
                left: rhs.shape(),
                right: (self.n, rhs.ncols()),
            })
        } else {
            Ok(())
        };
        // Every rank must solve the same system: the host's X is what all of them receive.
        agree(
            self.fcomm,
            (self.rank, self.size),
            local,
            &[
                ("the right-hand side's rows", rhs.nrows() as f64),
                ("the number of right-hand sides", rhs.ncols() as f64),
                ("transposed or not", f64::from(u8::from(transpose))),
            ],
            &[(
                "the right-hand side's values",
                checksum(rhs.iter().map(|v| v.to_bits())),
            )],
        )?;
        if rhs.ncols() == 0 || self.n == 0 {
            return Ok(());
        }
        let nrhs = i32::try_from(rhs.ncols()).map_err(|_| Error::InvalidArgument {
            what: "MUMPS solve",
            reason: format!("{} right-hand sides are too many", rhs.ncols()),
        })?;
        // ICNTL(9) = 1: A x = b; anything else: Aᵀ x = b.
        self.id.icntl[8] = if transpose { 2 } else { 1 };
        if self.host {
            self.id.nrhs = nrhs;
            self.id.lrhs = self.n as i32;
            self.id.rhs = rhs.as_mut_slice().as_mut_ptr();
        }
        let solved = self.call(JOB_SOLVE);
        self.id.rhs = std::ptr::null_mut();
        solved?;
        broadcast_from_host(self.fcomm, rhs.as_mut_slice());
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Collective on every rank, like every other phase (instances are dropped in the same
        // order everywhere under SPMD). Errors at the end are not reportable.
        let _ = self.call(JOB_END);
    }
}

/// INFOG(1) < 0 → an [`Error`] (every rank sees the same INFOG).
fn check(id: &ffi::DMUMPS_STRUC_C, job: i32) -> Result<()> {
    let (code, detail) = (id.infog[0], id.infog[1]);
    if code >= 0 {
        return Ok(());
    }
    let phase = match job {
        JOB_INIT => "initialization",
        JOB_ANALYSE => "analysis",
        JOB_FACTORIZE => "factorization",
        JOB_SOLVE => "solve",
        _ => "termination",
    };
    Err(match code {
        -10 | -6 => Error::Singular {
            column: None,
            reason: format!(
                "MUMPS {phase}: INFOG(1) = {code} ({}), INFOG(2) = {detail}",
                if code == -10 {
                    "numerically singular"
                } else {
                    "structurally singular"
                }
            ),
        },
        -7 | -8 | -9 | -13 | -14 | -15 | -17 | -19 | -20 | -22 => Error::OutOfMemory {
            what: format!("MUMPS {phase}"),
            reason: format!("INFOG(1) = {code}, INFOG(2) = {detail}: {}", meaning(code)),
        },
        _ => Error::Distributed {
            code,
            detail,
            reason: format!("MUMPS {phase}: {}", meaning(code)),
        },
    })
}

/// The MUMPS user guide's meaning of an INFOG(1) error code.
fn meaning(code: i32) -> &'static str {
    match code {
        -1 => "an error on another processor",
        -2 => "NNZ out of range",
        -3 => "invalid JOB (phase called out of order)",
        -4 => "error in the user-provided permutation",
        -5 => "real workspace allocation failed during analysis",
        -6 => "matrix structurally singular",
        -7 => "integer workspace allocation failed during analysis",
        -8 => "integer work array too small for factorization (raise ICNTL(14))",
        -9 => "real/complex work array too small (raise ICNTL(14))",
        -10 => "matrix numerically singular",
        -11 => "internal real work array too small for solution",
        -12 => "internal real work array too small for iterative refinement",
        -13 => "allocation failed",
        -14 => "internal integer work array too small for solution",
        -15 => "integer work array too small for iterative refinement",
        -16 => "N out of range",
        -17 => "internal send buffer too small (raise ICNTL(14))",
        -19 => "ICNTL(23) memory limit too small for factorization",
        -20 => "internal reception buffer too small (raise ICNTL(14))",
        -21 => "PAR = 0 with a single processor",
        -22 => "a pointer array given by the user is inappropriate",
        -40 => "SYM = 1 but the matrix is not positive definite",
        _ => "see the MUMPS user guide, section on error diagnostics",
    }
}

/// The analysed instances of one structure, by (communicator, SYM), not currently held by a factor.
#[derive(Default)]
struct Kept(Mutex<Vec<Instance>>);

fn kept(structure: &Structure) -> Arc<Kept> {
    crate::backend::cpu::analysis::slot(structure)
}

/// A numeric MUMPS factorization; its instance returns to the structure when dropped, so the next
/// factorization on the structure skips the analysis.
struct MumpsFactor {
    instance: Mutex<Option<Instance>>,
    home: Arc<Kept>,
    n: usize,
    memory: MumpsMemory,
    /// LU for SYM = 0, LDLᵀ for SYM = 1 and 2 (MUMPS factors symmetric matrices as LDLᵀ).
    method: Method,
}

impl Drop for MumpsFactor {
    fn drop(&mut self) {
        let taken = self
            .instance
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(inst) = taken {
            self.home
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(inst);
        }
    }
}

impl MumpsFactor {
    fn with<T>(&self, f: impl FnOnce(&mut Instance) -> Result<T>) -> Result<T> {
        let mut guard = self.instance.lock().unwrap_or_else(|p| p.into_inner());
        let inst = guard.as_mut().ok_or_else(|| Error::FactorizationFailed {
            backend: "MUMPS".into(),
            reason: "the instance was already released".into(),
        })?;
        f(inst)
    }
}

impl Factorization for MumpsFactor {
    fn solve_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.with(|i| i.solve(rhs, Direction::Forward))
    }
    fn solve_transpose_in_place(&self, rhs: &mut DMatrix<f64>) -> Result<()> {
        self.with(|i| i.solve(rhs, Direction::Transpose))
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn method(&self) -> Option<Method> {
        Some(self.method)
    }
    fn describe(&self) -> String {
        let m = &self.memory;
        format!(
            "MUMPS (MPI): {} factor entries on this rank of {} in all; {} MB allocated on this rank, {} MB at most on one rank",
            m.factor_entries, m.factor_entries_total, m.allocated_mb, m.allocated_mb_max
        )
    }
    /// This rank's factor entries in bytes (INFO(9) × 8).
    fn stored_bytes(&self) -> Option<usize> {
        usize::try_from(self.memory.factor_bytes()).ok()
    }
}

impl Factorizer for Mumps {
    /// Collective: see [`Factorizer::agree`].
    fn agree(&self, local: Result<()>) -> Result<()> {
        agree(self.fcomm, (self.rank, self.size), local, &[], &[])
    }

    fn factorize(&self, structure: &Arc<Structure>, values: &[f64]) -> Result<Arc<Factor>> {
        if structure.nrows() != structure.ncols() {
            return Err(Error::ShapeMismatch {
                op: "MUMPS factorization (square matrix)",
                left: (structure.nrows(), structure.ncols()),
                right: (structure.ncols(), structure.ncols()),
            });
        }
        let sym = self.sym_for(structure);
        let local = structure.check_len(values).and_then(|()| {
            if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    context: "MUMPS matrix value",
                    row: structure.row_idx()[k],
                    col: structure.col_idx()[k],
                    value: values[k],
                });
            }
            if structure.symmetry() == Symmetry::Full {
                structure.check_symmetric_values(values)?;
            }
            Ok(())
        });
        // One collective check before any MUMPS call: every rank's verdict, sizes and checksums
        // of the pattern and values.
        agree(
            self.fcomm,
            (self.rank, self.size),
            local,
            &[
                ("n", structure.nrows() as f64),
                ("the number of stored entries", structure.nnz() as f64),
                ("SYM", f64::from(sym)),
            ],
            &[
                (
                    "the pattern",
                    checksum(
                        structure
                            .col_ptr()
                            .iter()
                            .chain(structure.row_idx())
                            .map(|&i| i as u64),
                    ),
                ),
                (
                    "the matrix values",
                    checksum(values.iter().map(|v| v.to_bits())),
                ),
            ],
        )?;
        let home = kept(structure);
        let found = {
            let mut pool = home.0.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter()
                .position(|i| i.fcomm == self.fcomm && i.sym == sym)
                .map(|at| pool.swap_remove(at))
        };
        let mut inst = match found {
            Some(inst) => inst,
            None => {
                let inst = Instance::analysed(structure, self.fcomm, sym, (self.rank, self.size))?;
                structure.record_analysis();
                inst
            }
        };
        structure.record_factorization();
        if let Err(e) = inst.factorize(values) {
            home.0.lock().unwrap_or_else(|p| p.into_inner()).push(inst);
            return Err(e);
        }
        let memory = MumpsMemory {
            factor_entries: count(inst.id.info[8]),
            factor_entries_total: count(inst.id.infog[8]),
            allocated_mb: count(inst.id.info[15]),
            allocated_mb_max: count(inst.id.infog[20]),
        };
        *self.last_memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(memory);
        Ok(Arc::new(MumpsFactor {
            instance: Mutex::new(Some(inst)),
            home,
            n: structure.nrows(),
            memory,
            method: if sym == 0 { Method::Lu } else { Method::Ldlt },
        }))
    }
}
