//! Density-based topology optimization with MMA through argmin: the half MBB beam (minimum
//! compliance of a plane-stress beam under a volume fraction) or volume-to-point heat
//! conduction (minimum thermal compliance of a plate cooled through a small sink), on Q4
//! elements with a density filter and SIMP (`sparsegrad::problems::topology`).
//!
//! Each MMA iteration is one forward pass (filter, SIMP, assembly, one Cholesky solve,
//! compliance and volume) and two backward passes on the same tape (the compliance's adjoint
//! reuses the factorization). The objective is scaled to 100 at the start and the volume
//! constraint is 10 (mean x̄ / V − 1) ≤ 0, as in pymoto's examples, so that
//! `benches/compare/topopt_peers.py` runs the same problem in pymoto.
//!
//! ```text
//! cargo run --release --example topology [-- --problem mbb --nx 150 --ny 50 --iters 100 --out out/mbb]
//! cargo run --release --example topology -- --problem heat --nx 100 --volume 0.4 --radius 2 --out out/heat
//! ```

use std::process::ExitCode;
use std::time::Instant;

use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, State, KV};
use sparsegrad::optim::{ConstrainedProblem, Mma, MmaSettings, OptimState};
use sparsegrad::problems::topology::TopologyProblem;
use sparsegrad::Result;

/// Topology optimization with MMA.
#[derive(clap::Parser)]
struct Args {
    /// `mbb` (half MBB beam) or `heat` (volume-to-point conduction on a square plate).
    #[arg(long, default_value = "mbb")]
    problem: String,
    /// Elements along x (for `heat`, the plate's side).
    #[arg(long, default_value_t = 150)]
    nx: usize,
    /// Elements along y (`mbb` only).
    #[arg(long, default_value_t = 50)]
    ny: usize,
    /// Volume fraction.
    #[arg(long, default_value_t = 0.5)]
    volume: f64,
    /// Density filter radius (in elements).
    #[arg(long, default_value_t = 2.0)]
    radius: f64,
    /// MMA iterations.
    #[arg(long, default_value_t = 100)]
    iters: u64,
    /// MMA move limit.
    #[arg(long = "move", default_value_t = 0.1)]
    move_limit: f64,
    /// Print every this many iterations.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Output path without extension: PATH.svg (the physical density).
    #[arg(long, default_value = "topology")]
    out: String,
}

/// Prints the compliance, the volume constraint and the KKT residual every few iterations.
struct Progress {
    every: u64,
    scale: f64,
    start: Instant,
}

impl Observe<OptimState> for Progress {
    fn observe_iter(
        &mut self,
        state: &OptimState,
        kv: &KV,
    ) -> std::result::Result<(), argmin::core::Error> {
        let k = state.get_iter() + 1;
        if k % self.every == 0 {
            let get = |key: &str| kv.get(key).and_then(|v| v.get_float()).unwrap_or(f64::NAN);
            println!(
                "iter {k:>4}  compliance {:.6e}  volume constraint {:+.2e}  KKT {:.2e}  {:.2} s",
                state.get_cost() / self.scale,
                get("max_constraint"),
                get("kkt"),
                self.start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

/// The physical density as an SVG picture (black = solid), y up.
fn svg(problem: &TopologyProblem, density: &[f64]) -> String {
    let (nx, ny) = (problem.grid.nx, problem.grid.ny);
    let cell = (900 / nx.max(ny)).max(2);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' shape-rendering='crispEdges'>\n<rect width='100%' height='100%' fill='white'/>\n",
        nx * cell,
        ny * cell
    );
    for (e, &d) in density.iter().enumerate() {
        let (ex, ey) = (e % nx, e / nx);
        let level = (255.0 * (1.0 - d.clamp(0.0, 1.0))).round() as u8;
        if level < 250 {
            s.push_str(&format!(
                "<rect x='{}' y='{}' width='{cell}' height='{cell}' fill='rgb({level},{level},{level})'/>\n",
                ex * cell,
                (ny - 1 - ey) * cell
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn run() -> Result<bool> {
    let args: Args = clap::Parser::parse();
    let mut problem = match args.problem.as_str() {
        "mbb" => TopologyProblem::mbb(args.nx, args.ny, args.volume, args.radius)?,
        "heat" => TopologyProblem::heat_sink(args.nx, args.volume, args.radius)?,
        other => {
            eprintln!("unknown problem {other:?} (mbb or heat)");
            return Ok(false);
        }
    };
    let n = problem.grid.n_elements();
    let x0 = vec![args.volume; n];
    let c0 = problem.compliance_of(&x0)?;
    problem.objective_scale = 100.0 / c0;
    println!(
        "{}: {} × {} elements, volume fraction {}, filter radius {}, compliance of the uniform design {c0:.6e}",
        args.problem, problem.grid.nx, problem.grid.ny, args.volume, args.radius
    );
    let settings = MmaSettings {
        max_iters: args.iters,
        move_limit: args.move_limit,
        ..MmaSettings::new([0.0], [1.0])
    };
    // argmin's executor drives MMA, with this example's observer.
    let start = Instant::now();
    let progress = Progress {
        every: args.every.max(1),
        scale: problem.objective_scale,
        start,
    };
    let solver = Mma::new(settings, n)?;
    let result = Executor::new(ConstrainedProblem::new(&problem), solver)
        .configure(|s| s.param(x0.clone()).max_iters(args.iters))
        .add_observer(progress, ObserverMode::Always)
        .run()
        .map_err(|e| sparsegrad::Error::Optimizer {
            reason: e.to_string(),
        })?;
    let params = result.state().get_param().cloned().unwrap_or_default();
    let iterations = result.state().get_iter();
    let kkt = result.solver().kkt_residual();
    let elapsed = start.elapsed().as_secs_f64();
    let compliance = problem.compliance_of(&params)?;
    let volume = problem.volume_of(&params)?;
    let density = problem.physical_density_of(&params)?;
    let gray = density.iter().filter(|&&d| d > 0.1 && d < 0.9).count() as f64 / n as f64;
    println!(
        "final: compliance {compliance:.6e} ({:.1} % of the uniform design's), volume {volume:.4} (target {}), \
         KKT residual {:.2e}, {} iterations, {} evaluations, {:.1} ms per iteration, gray elements {:.1} %",
        100.0 * compliance / c0,
        args.volume,
        kkt,
        iterations,
        result.problem().problem.as_ref().map_or(0, |p| p.evaluations()),
        1000.0 * elapsed / iterations.max(1) as f64,
        100.0 * gray
    );
    let path = format!("{}.svg", args.out);
    if let Some(dir) = std::path::Path::new(&path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| sparsegrad::Error::Io {
            file: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    std::fs::write(&path, svg(&problem, &density)).map_err(|e| sparsegrad::Error::Io {
        file: path.clone(),
        reason: e.to_string(),
    })?;
    println!("wrote {path}");
    let met = volume <= args.volume + 1e-3;
    let improved = compliance < c0;
    if !met {
        eprintln!(
            "volume constraint not met: {volume} > {} + 1e-3",
            args.volume
        );
    }
    Ok(met && improved)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
