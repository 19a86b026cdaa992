//! Integration tests of the core engine (one binary, one module per concern).

mod analysis;
mod batch;
mod common;
mod dirichlet;
mod equilibrium;
mod ergonomics;
mod errors;
mod factored;
mod forward;
mod fuzz_corpus;
mod gradients;
mod hostile;
mod iterative;
mod logdet;
mod mma;
mod optim;
mod ordering;
mod precision;
mod problems;
mod properties;
mod reliability;
mod silent;
mod snapshots_gradients;
mod tape_ops;
