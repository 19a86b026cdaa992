//! The fuzz targets' regression corpora (fuzz/regression/ for `construct`,
//! fuzz/regression_tape_ops/ for `tape_ops`, minimized from `cargo fuzz` runs and any crash
//! found) replayed as normal tests through the same harness files the fuzz targets include: every
//! input must give a value or an `Error`, never a panic.

#[path = "../../fuzz/harness/bytes.rs"]
mod bytes;
#[path = "../../fuzz/harness/construct.rs"]
mod construct;
#[path = "../../fuzz/harness/tape_ops.rs"]
mod tape_ops;

use construct::exercise;

/// The inputs in fuzz/`name`, in file-name order (at least 20).
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "corpus has {} inputs", files.len());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn regression_corpus_never_panics() {
    let files = corpus("regression");
    let (mut ok, mut err) = (0, 0);
    let mut modes = [0usize; 4];
    for data in &files {
        if let Some(&first) = data.first() {
            modes[usize::from(first) % 4] += 1;
        }
        match exercise(data) {
            Ok(()) => ok += 1,
            Err(_) => err += 1,
        }
    }
    println!(
        "{} inputs: {ok} solved, {err} errors; per constructor {modes:?}",
        files.len()
    );
    assert!(ok > 0 && err > 0, "{ok} ok, {err} errors");
    assert!(modes.iter().all(|&m| m > 0), "{modes:?}");
}

#[test]
fn tape_ops_corpus_never_panics() {
    let files = corpus("regression_tape_ops");
    let mut ran = [0usize; tape_ops::OPS];
    for data in &files {
        for (total, n) in ran.iter_mut().zip(tape_ops::exercise(data)) {
            *total += n;
        }
    }
    println!(
        "{} inputs replayed; operations run per kind: {ran:?}",
        files.len()
    );
    // The corpus reaches every operation of the interpreter.
    assert!(ran.iter().all(|&n| n > 0), "{ran:?}");
}
