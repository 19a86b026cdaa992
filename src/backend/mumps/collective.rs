//! The ranks' agreement before every MUMPS call, and the broadcasts it needs (feature `mpi`):
//! one `MPI_Allreduce` compares every rank's verdict on its own input, sizes and checksums, so that
//! a refusal or a disagreement is an error on every rank and no rank waits inside MUMPS.

use crate::error::{Error, Result};

/// Broadcasts `data` from rank 0 of the communicator `fcomm` (Fortran handle).
pub(super) fn broadcast_from_host(fcomm: i32, data: &mut [f64]) {
    broadcast(fcomm, 0, data);
}

/// Element-wise maximum of `data` over the ranks of `fcomm`, in place.
fn max_over_ranks(fcomm: i32, data: &mut [f64]) {
    let send = data.to_vec();
    // SAFETY: MPI_Allreduce reads `send` and writes `data`, both live buffers of `data.len()`
    // doubles (a handful: the length fits an int); the communicator is the one MUMPS was given.
    #[allow(unsafe_code)]
    unsafe {
        let comm = mpi::ffi::MPI_Comm_f2c(fcomm);
        mpi::ffi::MPI_Allreduce(
            send.as_ptr().cast(),
            data.as_mut_ptr().cast(),
            data.len() as i32,
            mpi::ffi::RSMPI_DOUBLE,
            mpi::ffi::RSMPI_MAX,
            comm,
        );
    }
}

/// A 64-bit FNV-1a hash of `words` (indices, or values' bits), as two exact 32-bit halves.
pub(super) fn checksum(words: impl IntoIterator<Item = u64>) -> [f64; 2] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    [(h >> 32) as f64, (h & 0xffff_ffff) as f64]
}

/// Bytes of the refusing rank's message that the other ranks receive.
const MESSAGE_BYTES: usize = 400;

/// The collective input check that precedes every MUMPS call: each rank brings its local verdict,
/// numbers that must be equal on all ranks (sizes) and checksums (values), all compared in one
/// reduction. When any rank refused its input, every rank returns the same
/// [`Error::Distributed`] (INFOG(1) = −1, "an error on another processor", INFOG(2) = the lowest
/// refusing rank, with that rank's message); when the ranks disagree, every rank returns an error
/// naming what differs. Nothing is then passed to MUMPS, so no rank waits in it forever. With a
/// single rank there is nothing to agree on: its own error is returned as it is.
pub(super) fn agree(
    fcomm: i32,
    (rank, size): (i32, i32),
    local: Result<()>,
    numbers: &[(&str, f64)],
    checksums: &[(&str, [f64; 2])],
) -> Result<()> {
    if size <= 1 {
        return local;
    }
    let mut words = vec![
        f64::from(u8::from(local.is_err())),
        if local.is_err() {
            -f64::from(rank)
        } else {
            f64::NEG_INFINITY
        },
    ];
    let named: Vec<(&str, f64)> = numbers
        .iter()
        .copied()
        .chain(
            checksums
                .iter()
                .flat_map(|&(what, [hi, lo])| [(what, hi), (what, lo)]),
        )
        .collect();
    for &(_, v) in &named {
        words.extend([v, -v]);
    }
    max_over_ranks(fcomm, &mut words);
    if words[0] > 0.0 {
        let refusing = -words[1] as i32;
        let mut message = vec![0.0f64; MESSAGE_BYTES];
        if let Err(e) = &local {
            for (m, b) in message.iter_mut().zip(e.to_string().bytes()) {
                *m = f64::from(b);
            }
        }
        broadcast(fcomm, refusing, &mut message);
        let bytes: Vec<u8> = message
            .iter()
            .map(|&b| b as u8)
            .take_while(|&b| b != 0)
            .collect();
        return Err(Error::Distributed {
            code: -1,
            detail: refusing,
            reason: format!(
                "rank {refusing} refused its input, so every rank stops: {}",
                String::from_utf8_lossy(&bytes)
            ),
        });
    }
    for (k, &(what, _)) in named.iter().enumerate() {
        let (max, min) = (words[2 + 2 * k], -words[3 + 2 * k]);
        if max != min {
            let range = if checksums.iter().any(|c| c.0 == what) {
                String::new()
            } else {
                format!(" (from {min} to {max})")
            };
            return Err(Error::Distributed {
                code: -1,
                detail: -1,
                reason: format!(
                    "the ranks disagree on {what}{range}: every rank must make the same call with the same matrix and right-hand sides (SPMD)"
                ),
            });
        }
    }
    Ok(())
}

/// Broadcasts `data` from rank `root` of the communicator `fcomm` (Fortran handle).
pub(super) fn broadcast(fcomm: i32, root: i32, data: &mut [f64]) {
    for chunk in data.chunks_mut(1 << 26) {
        // SAFETY: MPI_Comm_f2c turns the handle MUMPS was given back into the C communicator;
        // MPI_Bcast reads/writes `chunk.len()` doubles (≤ 2^26, fits an int) of a live buffer.
        #[allow(unsafe_code)]
        unsafe {
            let comm = mpi::ffi::MPI_Comm_f2c(fcomm);
            mpi::ffi::MPI_Bcast(
                chunk.as_mut_ptr().cast(),
                chunk.len() as i32,
                mpi::ffi::RSMPI_DOUBLE,
                root,
                comm,
            );
        }
    }
}
