//! Structures, assemblies and Matrix Market text from arbitrary bytes, solved and differentiated
//! with arbitrary values and solvers: any outcome but a panic is fine.
#![no_main]

#[path = "../harness/bytes.rs"]
mod bytes;
#[path = "../harness/construct.rs"]
mod construct;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = construct::exercise(data);
});
