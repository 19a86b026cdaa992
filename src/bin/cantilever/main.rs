//! Inverse design of a mass-spring cantilever with sparsegrad and argmin.
//!
//! ```text
//! cargo run --release --bin cantilever -- [--nx 41] [--ny 11] [--iters 300]
//!     [--objective compliance|shape] [--target parabola:<tip>|<file.csv>]
//!     [--method (or --algorithm) lbfgs|lbfgs-hz|cg|sd|newton-cg] [--kmin 1e-3] [--out cantilever]
//! ```
//!
//! Writes `<out>.svg` (the design and its deformed shape) and `<out>_history.csv` (iteration, loss,
//! best loss, gradient norm, seconds).

mod svg;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use nalgebra::DMatrix;
use sparsegrad::optim::{
    minimize, Algorithm, ArgminProblem, LineSearch, Objective, ProgressObserver, ProgressStyle,
    Record, Settings,
};
use sparsegrad::problems::cantilever::{Cantilever, Compliance, Shape};
use sparsegrad::problems::cantilever3d::{Cantilever3d, Compliance3d};
use sparsegrad::Tape;

/// Inverse design of a mass-spring cantilever (sparsegrad + argmin): writes PREFIX.svg (the design
/// and its deformed shape) and PREFIX_history.csv.
#[derive(Parser)]
#[command(name = "cantilever", version)]
struct Args {
    /// 2: the planar lattice (PREFIX.svg); 3: the 3D lattice (PREFIX.vtu for ParaView and
    /// PREFIX.svg, an oblique view), compliance only.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    dim: u8,
    /// Nodes per row (default 41 in 2D, 32 in 3D).
    #[arg(long)]
    nx: Option<usize>,
    /// Rows (default 11 in 2D; nodes across, 8 in 3D).
    #[arg(long)]
    ny: Option<usize>,
    /// 3D: nodes in height (default 8).
    #[arg(long)]
    nz: Option<usize>,
    /// Optimizer iterations.
    #[arg(long, default_value_t = 300)]
    iters: u64,
    /// What to optimize.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Compliance)]
    objective: ObjectiveArg,
    /// For shape: parabola:TIP or a CSV file with one target y-displacement per bottom-row node
    /// (one number per line or comma-separated).
    #[arg(long, default_value = "parabola:-40")]
    target: String,
    /// lbfgs (Moré–Thuente), lbfgs-hz (Hager–Zhang), cg, sd, or newton-cg (truncated Newton-CG
    /// in a trust region with Hessian-vector products through the solve, ≤ 200 CG steps each).
    #[arg(long, alias = "algorithm", value_enum, default_value_t = AlgorithmArg::Lbfgs)]
    method: AlgorithmArg,
    /// Stiffness floor relative to the uniform design.
    #[arg(long = "kmin", default_value_t = 1e-3)]
    k_min: f64,
    /// Output prefix: PREFIX.svg, PREFIX_history.csv.
    #[arg(long, default_value = "cantilever")]
    out: String,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ObjectiveArg {
    Compliance,
    Shape,
}

impl ObjectiveArg {
    fn name(self) -> &'static str {
        match self {
            ObjectiveArg::Compliance => "compliance",
            ObjectiveArg::Shape => "shape",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Lbfgs,
    LbfgsHz,
    Cg,
    Sd,
    NewtonCg,
}

impl AlgorithmArg {
    fn algorithm(self) -> Algorithm {
        match self {
            AlgorithmArg::Lbfgs => Algorithm::Lbfgs {
                memory: 10,
                line_search: LineSearch::MoreThuente,
            },
            AlgorithmArg::LbfgsHz => Algorithm::Lbfgs {
                memory: 10,
                line_search: LineSearch::HagerZhang,
            },
            AlgorithmArg::Cg => Algorithm::NonlinearCg(LineSearch::MoreThuente),
            AlgorithmArg::Sd => Algorithm::SteepestDescent(LineSearch::MoreThuente),
            AlgorithmArg::NewtonCg => Algorithm::NewtonCg { cg_iterations: 200 },
        }
    }
}

/// The target deflection of the bottom row: a parabola reaching `tip` at the free end, or a CSV.
fn target_curve(spec: &str, model: &Cantilever) -> Result<Vec<f64>, String> {
    if let Some(tip) = spec.strip_prefix("parabola:") {
        let tip: f64 = tip
            .parse()
            .map_err(|_| format!("--target: '{tip}' is not a number"))?;
        let len = (model.nx - 1) as f64;
        return Ok((0..model.nx)
            .map(|i| tip * (i as f64 / len).powi(2))
            .collect());
    }
    let text = std::fs::read_to_string(spec).map_err(|e| format!("--target {spec}: {e}"))?;
    let values: Vec<f64> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| format!("--target {spec}: '{t}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if values.len() != model.nx {
        return Err(format!(
            "--target {spec}: {} values, expected one per bottom-row node ({})",
            values.len(),
            model.nx
        ));
    }
    Ok(values)
}

fn evaluate(
    model: &Cantilever,
    objective: &dyn Objective,
    phi: &[f64],
) -> sparsegrad::Result<(f64, f64, Vec<f64>, Vec<f64>)> {
    let tape = Tape::new();
    let p = tape.var(DMatrix::from_column_slice(phi.len(), 1, phi));
    let k = model.stiffness(p);
    let u = model.displacement(k)?;
    let loss = objective.loss(&tape, p)?;
    let g = tape.backward(loss)?;
    Ok((
        loss.scalar()?,
        g.wrt(p).norm(),
        k.value()?.as_slice().to_vec(),
        u.value()?.as_slice().to_vec(),
    ))
}

/// Writes PREFIX_history.csv from the observer's records.
fn write_history(
    out: &str,
    history: &Arc<std::sync::Mutex<Vec<Record>>>,
) -> Result<String, String> {
    let csv_path = format!("{out}_history.csv");
    let mut csv = String::from("iteration,loss,best_loss,gradient_norm,seconds\n");
    for r in history
        .lock()
        .map_err(|_| "history lock poisoned".to_string())?
        .iter()
    {
        csv.push_str(&format!(
            "{},{:.12e},{:.12e},{:.6e},{:.4}\n",
            r.iteration,
            r.loss,
            r.best_loss,
            r.gradient_norm,
            r.elapsed.as_secs_f64()
        ));
    }
    std::fs::write(&csv_path, csv).map_err(|e| format!("{csv_path}: {e}"))?;
    Ok(csv_path)
}

/// The progress observer: a bar on a terminal, lines otherwise.
fn observer(iters: u64) -> ProgressObserver {
    let style = if std::io::stderr().is_terminal() {
        ProgressStyle::Bar
    } else {
        ProgressStyle::Lines
    };
    ProgressObserver::new(
        iters,
        if style == ProgressStyle::Bar { 1 } else { 25 },
        style,
    )
}

/// `--dim 3`: compliance of the 3D lattice, written as .vtu and an oblique SVG view.
fn run3d(args: &Args) -> Result<(), String> {
    let err = |e: sparsegrad::Error| e.to_string();
    if args.objective != ObjectiveArg::Compliance {
        return Err("--dim 3 optimizes compliance only (--objective compliance)".into());
    }
    let (nx, ny, nz) = (
        args.nx.unwrap_or(32),
        args.ny.unwrap_or(8),
        args.nz.unwrap_or(8),
    );
    let model = Arc::new(Cantilever3d::new(nx, ny, nz, args.k_min).map_err(err)?);
    let n_dof = 3 * model.nodes.len();
    println!(
        "3D cantilever {nx} × {ny} × {nz}: {} springs, {n_dof} unknowns ({} free), compliance, {} iterations",
        model.springs.len(),
        n_dof - 3 * ny * nz,
        args.iters
    );
    let phi0 = model.uniform_design();
    let k0 = vec![1.0; model.springs.len()];
    let c_uniform = model.compliance_of(&k0).map_err(err)?;
    println!("uniform design (every k = 1): compliance {c_uniform:.6e}");
    let observer = observer(args.iters);
    let history = observer.history();
    let started = std::time::Instant::now();
    let outcome = minimize(
        ArgminProblem::new(Compliance3d(model.clone())),
        phi0,
        &Settings::new(args.method.algorithm(), args.iters),
        Some(observer),
    )
    .map_err(err)?;
    let tape = Tape::new();
    let phi = tape.constant(outcome.params.as_slice());
    let k_var = model.stiffness(phi);
    let u = model
        .displacement(k_var)
        .map_err(err)?
        .value()
        .map_err(err)?;
    let k = k_var.value().map_err(err)?.as_slice().to_vec();
    let c_final = model.compliance_of(&k).map_err(err)?;
    println!(
        "optimized ({} iterations, {} evaluations, {}, {:.1} s): compliance {c_final:.6e}, ratio {:.4}; material {:.3} (uniform {:.3})",
        outcome.iterations,
        outcome.evaluations,
        outcome.termination,
        started.elapsed().as_secs_f64(),
        c_final / c_uniform,
        model.material(&k),
        model.material(&k0)
    );
    let vtu_path = format!("{}.vtu", args.out);
    std::fs::write(&vtu_path, model.to_vtu(&k, u.as_slice()))
        .map_err(|e| format!("{vtu_path}: {e}"))?;
    let title = format!(
        "{nx} × {ny} × {nz} cantilever: compliance {:.3} of the uniform design",
        c_final / c_uniform
    );
    let svg_path = format!("{}.svg", args.out);
    std::fs::write(&svg_path, svg::render3d(&model, &k, &title))
        .map_err(|e| format!("{svg_path}: {e}"))?;
    let csv_path = write_history(&args.out, &history)?;
    println!("wrote {vtu_path}, {svg_path} and {csv_path}");
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    if args.dim == 3 {
        return run3d(&args);
    }
    let err = |e: sparsegrad::Error| e.to_string();
    let (nx, ny) = (args.nx.unwrap_or(41), args.ny.unwrap_or(11));
    let model = Arc::new(Cantilever::new(nx, ny, args.k_min).map_err(err)?);
    let objective: Arc<dyn Objective> = match args.objective {
        ObjectiveArg::Compliance => Arc::new(Compliance(model.clone())),
        ObjectiveArg::Shape => Arc::new(Shape {
            model: model.clone(),
            target: target_curve(&args.target, &model)?,
        }),
    };
    let n_dof = 2 * model.nodes.len();
    println!(
        "cantilever {} × {}: {} springs, {} unknowns ({} free), objective {}, {} iterations",
        model.nx,
        model.ny,
        model.springs.len(),
        n_dof,
        n_dof - 2 * model.ny,
        args.objective.name(),
        args.iters
    );
    let phi0 = model.uniform_design();
    let (loss0, gnorm0, k0, _) = evaluate(&model, objective.as_ref(), &phi0).map_err(err)?;
    println!(
        "uniform design (every k = 1, material {:.3}): loss {loss0:.6e}, |grad| {gnorm0:.3e}",
        model.material(&k0)
    );

    let observer = observer(args.iters);
    let history = observer.history();
    let outcome = minimize(
        ArgminProblem::new(objective.clone()),
        phi0,
        &Settings::new(args.method.algorithm(), args.iters),
        Some(observer),
    )
    .map_err(err)?;
    let (loss, gnorm, k, u) = evaluate(&model, objective.as_ref(), &outcome.params).map_err(err)?;
    println!(
        "optimized ({} iterations, {} evaluations, {}): loss {loss:.6e}, |grad| {gnorm:.3e} ({:.1e} of the initial)",
        outcome.iterations,
        outcome.evaluations,
        outcome.termination,
        gnorm / gnorm0
    );
    let c_uniform = model.compliance_of(&k0).map_err(err)?;
    let c_final = model.compliance_of(&k).map_err(err)?;
    println!(
        "compliance: uniform {c_uniform:.6e}, optimized {c_final:.6e}, ratio {:.4}; material {:.3} (uniform {:.3})",
        c_final / c_uniform,
        model.material(&k),
        model.material(&k0)
    );
    if args.objective == ObjectiveArg::Shape {
        let tip = u[2 * (model.nx - 1) + 1];
        println!("bottom-row fit: ½‖u_y − target‖² = {loss:.6e}; tip deflection {tip:.4}");
    }

    let title = format!(
        "{} × {} cantilever, {} objective: loss {:.4e} ({:.3} of uniform), compliance ratio {:.3}",
        model.nx,
        model.ny,
        args.objective.name(),
        loss,
        loss / loss0,
        c_final / c_uniform
    );
    let svg_path = format!("{}.svg", args.out);
    std::fs::write(&svg_path, svg::render(&model, &k, &u, &title))
        .map_err(|e| format!("{svg_path}: {e}"))?;
    let csv_path = write_history(&args.out, &history)?;
    println!("wrote {svg_path} and {csv_path}");
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
