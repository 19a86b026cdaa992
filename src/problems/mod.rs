//! Reproducible problem instances used by the examples, binaries, tests and benchmarks: weighted
//! graph Laplacians (random graphs, the seed's cyclic chain, grids), the mass-spring cantilever,
//! triangle meshes with P1 operators, and quasi-harmonic interpolation weights.

pub mod cantilever;
pub mod cantilever3d;
pub mod elasticity;
pub mod graph;
pub mod mesh;
pub mod quasi_harmonic;
