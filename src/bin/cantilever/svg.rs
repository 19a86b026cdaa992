//! The SVG picture of a cantilever design: springs with width ∝ stiffness, the deformed shape
//! overlaid, supports and the load marked.

use std::fmt::Write;

use sparsegrad::problems::cantilever::Cantilever;
use sparsegrad::problems::cantilever3d::Cantilever3d;

/// A green downward arrow ending at (lx, ly).
fn load_arrow(s: &mut String, lx: f64, ly: f64) {
    let _ = writeln!(
        s,
        r##"<g stroke="#2ca02c" fill="#2ca02c" stroke-width="3"><line x1="{lx:.1}" y1="{:.1}" x2="{lx:.1}" y2="{:.1}"/><polygon points="{lx:.1},{ly:.1} {:.1},{:.1} {:.1},{:.1}"/></g>"##,
        ly - 55.0,
        ly - 12.0,
        lx - 7.0,
        ly - 14.0,
        lx + 7.0,
        ly - 14.0
    );
}

/// The document's opening: size, white background, the title.
fn header(w: f64, h: f64, margin: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{margin}" y="28" font-family="sans-serif" font-size="16">{title}</text>"#
    );
    s
}

/// The 95th percentile of `k` (0 when empty).
fn percentile95(k: &[f64]) -> f64 {
    let mut sorted = k.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted
        .get((sorted.len() * 95) / 100)
        .copied()
        .unwrap_or(0.0)
}

/// A grey support triangle pointing at (x, y) from the left.
fn support(s: &mut String, x: f64, y: f64) {
    let _ = writeln!(
        s,
        r##"<polygon points="{x:.1},{y:.1} {:.1},{:.1} {:.1},{:.1}" fill="#555"/>"##,
        x - 18.0,
        y - 10.0,
        x - 18.0,
        y + 10.0
    );
}

/// Renders the design `k` with displacements `u` (2 per node) to an SVG document.
pub fn render(model: &Cantilever, k: &[f64], u: &[f64], title: &str) -> String {
    let scale = 60.0; // pixels per unit length
    let margin = 70.0;
    // Room below for the deformed shape (its largest displacement is drawn as 15% of the height).
    let sag = 0.2 * (model.ny - 1) as f64 * scale;
    let (w, h) = (
        (model.nx - 1) as f64 * scale + 2.0 * margin,
        (model.ny - 1) as f64 * scale + 2.0 * margin + 30.0 + sag,
    );
    // Screen coordinates: y grows downward.
    let at = |x: f64, y: f64| {
        (
            margin + x * scale,
            margin + 30.0 + ((model.ny - 1) as f64 - y) * scale,
        )
    };
    // Exaggerate displacements so the largest one spans 15% of the height.
    let u_max = u.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let amp = if u_max > 0.0 {
        0.15 * (model.ny - 1).max(1) as f64 / u_max
    } else {
        0.0
    };

    // Widths are relative to the 95th percentile of k, so one very stiff spring does not hide the rest.
    let k_ref = percentile95(k);
    let mut s = header(w, h, margin, title);
    // Springs with at least 3% of that reference stiffness; the rest are not drawn.
    let visible = |e: usize| k_ref > 0.0 && k[e] >= 0.03 * k_ref;
    // Deformed shape of the visible springs (thin, behind).
    let _ = writeln!(
        s,
        r##"<g stroke="#d62728" stroke-opacity="0.6" stroke-width="1.2">"##
    );
    for (e, &(a, b)) in model.springs.iter().enumerate() {
        if !visible(e) {
            continue;
        }
        let (x1, y1) = at(
            model.nodes[a][0] + amp * u[2 * a],
            model.nodes[a][1] + amp * u[2 * a + 1],
        );
        let (x2, y2) = at(
            model.nodes[b][0] + amp * u[2 * b],
            model.nodes[b][1] + amp * u[2 * b + 1],
        );
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"#
        );
    }
    let _ = writeln!(s, "</g>");
    // The design: width ∝ stiffness.
    let _ = writeln!(s, r##"<g stroke="#1f3b73" stroke-linecap="round">"##);
    for (e, &(a, b)) in model.springs.iter().enumerate() {
        if !visible(e) {
            continue;
        }
        let rel = (k[e] / k_ref).min(1.0);
        let (x1, y1) = at(model.nodes[a][0], model.nodes[a][1]);
        let (x2, y2) = at(model.nodes[b][0], model.nodes[b][1]);
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke-width="{:.2}" stroke-opacity="{:.2}"/>"#,
            0.5 + 9.5 * rel,
            0.35 + 0.65 * rel
        );
    }
    let _ = writeln!(s, "</g>");
    // Supports: hatched triangles at the clamped left column.
    for j in 0..model.ny {
        let (x, y) = at(0.0, j as f64);
        support(&mut s, x, y);
    }
    // Load: a downward arrow at the loaded node.
    let (lx, ly) = at(
        model.nodes[model.load_node][0],
        model.nodes[model.load_node][1],
    );
    load_arrow(&mut s, lx, ly);
    let _ = writeln!(
        s,
        r##"<text x="{margin}" y="{:.0}" font-family="sans-serif" font-size="12" fill="#444">blue: springs with k ≥ 3% of the 95th percentile (width ∝ stiffness, capped there) · red: their deformed shape (×{amp:.3}) · green: load · grey: clamped supports</text>"##,
        h - 12.0
    );
    s.push_str("</svg>\n");
    s
}

/// Renders a 3D design `k` in an oblique projection (x to the right, z up, y receding up-right):
/// springs with at least 1% of the largest stiffness (optimized 3D designs put their material into
/// few members), width ∝ √stiffness, drawn back to front over the lattice's bounding box; the
/// clamped face and the load marked.
pub fn render3d(model: &Cantilever3d, k: &[f64], title: &str) -> String {
    let scale = 40.0;
    let (depth_x, depth_y) = (0.5, 0.35); // projection of the y axis
    let (nx, ny, nz) = (
        model.nx as f64 - 1.0,
        model.ny as f64 - 1.0,
        model.nz as f64 - 1.0,
    );
    let margin = 60.0;
    let w = (nx + depth_x * ny) * scale + 2.0 * margin;
    let h = (nz + depth_y * ny) * scale + 2.0 * margin + 40.0;
    let at = |p: &[f64; 3]| {
        (
            margin + (p[0] + depth_x * p[1]) * scale,
            h - margin - (p[2] + depth_y * p[1]) * scale,
        )
    };
    let k_ref = k.iter().fold(0.0f64, |m, &v| m.max(v));
    let mut s = header(w, h, margin, title);
    // Clamped face (x = 0): a grey parallelogram.
    let corners = [
        [0.0, 0.0, 0.0],
        [0.0, ny, 0.0],
        [0.0, ny, nz],
        [0.0, 0.0, nz],
    ];
    let face: Vec<String> = corners
        .iter()
        .map(|c| {
            let (x, y) = at(c);
            format!("{:.1},{:.1}", x - 6.0, y)
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polygon points="{}" fill="#bbb" stroke="#555"/>"##,
        face.join(" ")
    );
    // The bounding box, thin.
    let _ = writeln!(s, r##"<g stroke="#999" stroke-width="0.8" fill="none">"##);
    for (a, b) in [
        ([0.0, 0.0, 0.0], [nx, 0.0, 0.0]),
        ([0.0, 0.0, nz], [nx, 0.0, nz]),
        ([0.0, ny, 0.0], [nx, ny, 0.0]),
        ([0.0, ny, nz], [nx, ny, nz]),
        ([nx, 0.0, 0.0], [nx, ny, 0.0]),
        ([nx, 0.0, nz], [nx, ny, nz]),
        ([nx, 0.0, 0.0], [nx, 0.0, nz]),
        ([nx, ny, 0.0], [nx, ny, nz]),
    ] {
        let ((x1, y1), (x2, y2)) = (at(&a), at(&b));
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}"/>"#
        );
    }
    let _ = writeln!(s, "</g>");
    // Back (large y) to front, so nearer springs are drawn over farther ones.
    let mut order: Vec<usize> = (0..model.springs.len())
        .filter(|&e| k_ref > 0.0 && k[e] >= 0.01 * k_ref)
        .collect();
    let depth = |e: usize| {
        let (a, b) = model.springs[e];
        model.nodes[a][1] + model.nodes[b][1]
    };
    order.sort_by(|&a, &b| depth(b).total_cmp(&depth(a)));
    let _ = writeln!(s, r##"<g stroke="#1f3b73" stroke-linecap="round">"##);
    for e in order {
        let (a, b) = model.springs[e];
        let rel = (k[e] / k_ref).sqrt();
        let ((x1, y1), (x2, y2)) = (at(&model.nodes[a]), at(&model.nodes[b]));
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke-width="{:.2}" stroke-opacity="{:.2}"/>"#,
            1.0 + 9.0 * rel,
            0.4 + 0.6 * rel
        );
    }
    let _ = writeln!(s, "</g>");
    let (lx, ly) = at(&model.nodes[model.load_node]);
    load_arrow(&mut s, lx, ly);
    let _ = writeln!(
        s,
        r##"<text x="{margin}" y="{:.0}" font-family="sans-serif" font-size="12" fill="#444">oblique view (x right, z up, y receding) · springs with k ≥ 1% of the stiffest, width ∝ √k · green: load · grey: clamped face</text>"##,
        h - 12.0
    );
    s.push_str("</svg>\n");
    s
}
