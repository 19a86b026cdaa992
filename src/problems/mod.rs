//! Reproducible problem instances used by the examples, binaries, tests and benchmarks: weighted
//! graph Laplacians (random graphs, the seed's cyclic chain, grids), the mass-spring cantilever,
//! triangle meshes with P1 operators, quasi-harmonic interpolation weights, and a Gaussian Markov
//! random field with per-region conductances, nonlinear spring networks, and density-based topology
//! optimization (Q4 elements, density filter, SIMP, the MBB beam and heat conduction).

pub mod cantilever;
pub mod cantilever3d;
pub mod elasticity;
pub mod gaussian_field;
pub mod graph;
pub mod mesh;
pub mod quasi_harmonic;
pub mod spring_network;
pub mod topology;
