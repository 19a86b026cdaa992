//! Reproducible problem instances used by the examples, binaries, tests and benchmarks: weighted
//! graph Laplacians (random graphs, the seed's cyclic chain, grids) and the mass-spring cantilever.

pub mod cantilever;
pub mod graph;
