//! Random sequences of tape operations (shapes, indices, slices, scalars, NaN/±∞, variables of
//! another tape, backward, gradients) and the public helpers with length and index arguments:
//! any outcome but a panic, an abort or a sanitizer report is fine.
#![no_main]

#[path = "../harness/bytes.rs"]
mod bytes;
#[path = "../harness/tape_ops.rs"]
mod tape_ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tape_ops::exercise(data);
});
