//! Log-log plot of the benchmark (docs/bench/series.csv from benches/compare/report.py) in the
//! style of the seed's benchmark.png: time against n per tool, with O(n), O(n²), O(n³) guides.
//!
//! `cargo run --release --example benchmark_plot -- docs/bench/series.csv docs/bench/benchmark.svg`

use std::collections::BTreeMap;
use std::process::ExitCode;

use plotters::prelude::*;

type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn read(path: &str) -> Result<BTreeMap<String, Series>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut cases: BTreeMap<String, Series> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            return Err(format!("{path}:{}: expected series,case,n,ms", i + 1));
        }
        let (n, ms): (f64, f64) = (
            f[2].parse()
                .map_err(|_| format!("{path}:{}: bad n", i + 1))?,
            f[3].parse()
                .map_err(|_| format!("{path}:{}: bad ms", i + 1))?,
        );
        cases
            .entry(f[1].to_string())
            .or_default()
            .entry(f[0].to_string())
            .or_default()
            .push((n, ms / 1e3));
    }
    for series in cases.values_mut() {
        for pts in series.values_mut() {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    Ok(cases)
}

fn plot(cases: &BTreeMap<String, Series>, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(out, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, cases.len().max(1)));
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    for (panel, (case, series)) in panels.iter().zip(cases) {
        let all: Vec<(f64, f64)> = series.values().flatten().copied().collect();
        let (x0, x1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (y0, y1) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("∂‖A(θ)⁻¹b‖²/∂θ, {case}"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (x0 / 1.5..x1 * 1.5).log_scale(),
                (y0 / 2.0..y1 * 4.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("problem size n")
            .y_desc("time (s)")
            .draw()?;
        // Guides anchored at the first sparsegrad cold point.
        if let Some(&(gx, gy)) = series.get("sparsegrad cold").and_then(|p| p.first()) {
            for (p, label) in [(1.0, "O(n)"), (2.0, "O(n²)"), (3.0, "O(n³)")] {
                let pts: Vec<(f64, f64)> = all
                    .iter()
                    .map(|q| q.0)
                    .chain([x0, x1])
                    .map(|x| (x, gy * (x / gx).powf(p)))
                    .filter(|q| q.1 <= y1 * 4.0)
                    .collect();
                let mut pts = pts;
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if let Some(&last) = pts.last() {
                    chart.draw_series(LineSeries::new(pts, BLACK.mix(0.5).stroke_width(1)))?;
                    chart.draw_series(std::iter::once(Text::new(
                        label,
                        last,
                        ("sans-serif", 14),
                    )))?;
                }
            }
        }
        for (k, (name, pts)) in series.iter().enumerate() {
            let colour = palette[k % palette.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(3)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Draws the benchmark series as a log-log plot.
#[derive(clap::Parser)]
struct Args {
    /// The series (CSV) written by benches/compare/report.py.
    #[arg(default_value = "docs/bench/series.csv")]
    input: String,
    /// The SVG to write.
    #[arg(default_value = "docs/bench/benchmark.svg")]
    output: String,
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let (input, output) = (args.input.as_str(), args.output.as_str());
    match read(input)
        .map_err(|e| e.into())
        .and_then(|c| plot(&c, output))
    {
        Ok(()) => {
            println!("wrote {output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
