//! Inverse design of a mass-spring cantilever with sparsegrad and argmin.
//!
//! ```text
//! cargo run --release --bin cantilever -- [--nx 41] [--ny 11] [--iters 300]
//!     [--objective compliance|shape] [--target parabola:<tip>|<file.csv>]
//!     [--method lbfgs|lbfgs-hz|cg|sd] [--kmin 1e-3] [--out cantilever]
//! ```
//!
//! Writes `<out>.svg` (the design and its deformed shape) and `<out>_history.csv` (iteration, loss,
//! best loss, gradient norm, seconds).

mod svg;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use nalgebra::DMatrix;
use sparsegrad::optim::{
    minimize, Algorithm, ArgminProblem, LineSearch, Objective, ProgressObserver, ProgressStyle,
    Settings,
};
use sparsegrad::problems::cantilever::{Cantilever, Compliance, Shape};
use sparsegrad::Tape;

const HELP: &str = "cantilever: inverse design of a mass-spring cantilever (sparsegrad + argmin)

options:
  --nx N              nodes per row (default 41)
  --ny N              rows (default 11)
  --iters N           optimizer iterations (default 300)
  --objective NAME    compliance (default) | shape
  --target SPEC       for shape: parabola:<tip> (default parabola:-40) or a CSV file with one
                      target y-displacement per bottom-row node (one number per line or comma-separated)
  --method NAME       lbfgs (default, Moré–Thuente) | lbfgs-hz (Hager–Zhang) | cg | sd
  --kmin X            stiffness floor relative to the uniform design (default 1e-3)
  --out PREFIX        output prefix (default cantilever): PREFIX.svg, PREFIX_history.csv";

struct Args {
    nx: usize,
    ny: usize,
    iters: u64,
    objective: String,
    target: String,
    method: Algorithm,
    k_min: f64,
    out: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nx: 41,
        ny: 11,
        iters: 300,
        objective: "compliance".into(),
        target: "parabola:-40".into(),
        method: Algorithm::default(),
        k_min: 1e-3,
        out: "cantilever".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{HELP}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: '{v}' is not a number"))
        };
        match flag.as_str() {
            "--nx" => a.nx = num(&value)? as usize,
            "--ny" => a.ny = num(&value)? as usize,
            "--iters" => a.iters = num(&value)? as u64,
            "--objective" => a.objective = value,
            "--target" => a.target = value,
            "--kmin" => a.k_min = num(&value)?,
            "--out" => a.out = value,
            "--method" => {
                a.method = match value.as_str() {
                    "lbfgs" => Algorithm::Lbfgs {
                        memory: 10,
                        line_search: LineSearch::MoreThuente,
                    },
                    "lbfgs-hz" => Algorithm::Lbfgs {
                        memory: 10,
                        line_search: LineSearch::HagerZhang,
                    },
                    "cg" => Algorithm::NonlinearCg(LineSearch::MoreThuente),
                    "sd" => Algorithm::SteepestDescent(LineSearch::MoreThuente),
                    other => return Err(format!("unknown method '{other}'")),
                }
            }
            other => return Err(format!("unknown option '{other}' (see --help)")),
        }
    }
    Ok(a)
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

fn run(args: Args) -> Result<(), String> {
    let err = |e: sparsegrad::Error| e.to_string();
    let model = Arc::new(Cantilever::new(args.nx, args.ny, args.k_min).map_err(err)?);
    let objective: Arc<dyn Objective> = match args.objective.as_str() {
        "compliance" => Arc::new(Compliance(model.clone())),
        "shape" => Arc::new(Shape {
            model: model.clone(),
            target: target_curve(&args.target, &model)?,
        }),
        other => return Err(format!("unknown objective '{other}' (compliance | shape)")),
    };
    let n_dof = 2 * model.nodes.len();
    println!(
        "cantilever {} × {}: {} springs, {} unknowns ({} free), objective {}, {} iterations",
        model.nx,
        model.ny,
        model.springs.len(),
        n_dof,
        n_dof - 2 * model.ny,
        args.objective,
        args.iters
    );
    let phi0 = model.uniform_design();
    let (loss0, gnorm0, k0, _) = evaluate(&model, objective.as_ref(), &phi0).map_err(err)?;
    println!(
        "uniform design (every k = 1, material {:.3}): loss {loss0:.6e}, |grad| {gnorm0:.3e}",
        model.material(&k0)
    );

    let style = if std::io::stderr().is_terminal() {
        ProgressStyle::Bar
    } else {
        ProgressStyle::Lines
    };
    let observer = ProgressObserver::new(
        args.iters,
        if style == ProgressStyle::Bar { 1 } else { 25 },
        style,
    );
    let history = observer.history();
    let outcome = minimize(
        ArgminProblem::new(objective.clone()),
        phi0,
        &Settings::new(args.method, args.iters),
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
    if args.objective == "shape" {
        let tip = u[2 * (model.nx - 1) + 1];
        println!("bottom-row fit: ½‖u_y − target‖² = {loss:.6e}; tip deflection {tip:.4}");
    }

    let title = format!(
        "{} × {} cantilever, {} objective: loss {:.4e} ({:.3} of uniform), compliance ratio {:.3}",
        model.nx,
        model.ny,
        args.objective,
        loss,
        loss / loss0,
        c_final / c_uniform
    );
    let svg_path = format!("{}.svg", args.out);
    std::fs::write(&svg_path, svg::render(&model, &k, &u, &title))
        .map_err(|e| format!("{svg_path}: {e}"))?;
    let csv_path = format!("{}_history.csv", args.out);
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
    println!("wrote {svg_path} and {csv_path}");
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
