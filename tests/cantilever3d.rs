//! The 3D cantilever: its gradient against finite differences, and `cantilever --dim 3` writing a
//! `.vtu` file that reads back with the lattice's points, springs, stiffnesses and displacements;
//! `cantilever --algorithm newton-cg` (2D and 3D) converging to the gradient tolerance.

use std::process::Command;
use std::sync::Arc;

use sparsegrad::check;
use sparsegrad::problems::cantilever3d::{Cantilever3d, Compliance3d};

/// Unordered neighbour pairs of an nx × ny × nz lattice with 26-neighbourhoods.
fn spring_count(n: [usize; 3]) -> usize {
    let mut total = 0;
    for dx in -1i64..=1 {
        for dy in -1i64..=1 {
            for dz in -1i64..=1 {
                if (dx, dy, dz) != (0, 0, 0) {
                    total += [dx, dy, dz]
                        .iter()
                        .zip(n)
                        .map(|(d, n)| n - d.unsigned_abs() as usize)
                        .product::<usize>();
                }
            }
        }
    }
    total / 2
}

#[test]
fn compliance_gradient_matches_finite_differences() {
    let model = Arc::new(Cantilever3d::new(4, 2, 3, 1e-3).unwrap());
    assert_eq!(model.springs.len(), spring_count([4, 2, 3]));
    let phi: Vec<f64> = model
        .uniform_design()
        .iter()
        .enumerate()
        .map(|(e, p)| p + 0.3 * (e as f64).sin())
        .collect();
    let report = check::objective(
        &Compliance3d(model.clone()),
        phi,
        &check::Options::default(),
    )
    .unwrap();
    assert!(report.passed, "{report:?}");
    // The material of the uniform design is kept by every design (softmax budget).
    let k1 = vec![1.0; model.springs.len()];
    assert!((model.material(&k1) - model.lengths.iter().sum::<f64>()).abs() < 1e-9);
}

fn data_array<'a>(vtu: &'a str, name: &str) -> Vec<&'a str> {
    let at = vtu.find(name).unwrap_or_else(|| panic!("{name} missing"));
    let body = &vtu[at..];
    let start = body.find('>').unwrap() + 1;
    let end = body.find("</DataArray>").unwrap();
    body[start..end].split_whitespace().collect()
}

#[test]
fn cantilever_dim_3_writes_a_vtu_that_reads_back() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-c3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("c").display().to_string();
    let run = Command::new(env!("CARGO_BIN_EXE_cantilever"))
        .args([
            "--dim", "3", "--nx", "6", "--ny", "3", "--nz", "3", "--iters", "15", "--out", &out,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ratio: f64 = stdout
        .split("ratio ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {stdout}"));
    assert!(ratio < 0.9, "{stdout}");
    let vtu = std::fs::read_to_string(format!("{out}.vtu")).unwrap();
    let (nodes, springs) = (54, spring_count([6, 3, 3]));
    assert!(vtu.contains(&format!(
        "NumberOfPoints=\"{nodes}\" NumberOfCells=\"{springs}\""
    )));
    let points = data_array(&vtu, "NumberOfComponents=\"3\" format");
    assert_eq!(points.len(), 3 * nodes);
    assert_eq!(data_array(&vtu, "Name=\"connectivity\"").len(), 2 * springs);
    assert_eq!(
        data_array(&vtu, "Name=\"types\"")
            .iter()
            .filter(|t| **t == "3")
            .count(),
        springs
    );
    let k: Vec<f64> = data_array(&vtu, "Name=\"stiffness\"")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(k.len(), springs);
    assert!(k.iter().all(|&v| v >= 1e-3 * 0.999));
    let u: Vec<f64> = data_array(&vtu, "Name=\"displacement\" NumberOfComponents")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(u.len(), 3 * nodes);
    // Clamped face (x = 0) does not move; the loaded end moves down.
    for v in (0..nodes).filter(|v| v % 6 == 0) {
        assert_eq!(&u[3 * v..3 * v + 3], &[0.0, 0.0, 0.0]);
    }
    let load = (3 + 3 / 2) * 6 + 5;
    assert!(u[3 * load + 2] < 0.0);
    assert!(std::fs::metadata(format!("{out}.svg")).unwrap().len() > 1000);
}

/// `cantilever --algorithm newton-cg` reaches ‖∇f‖ ≤ 1e-8·max(1, f) ("Solver converged") on a
/// small 2D and 3D lattice; in 2D the reported gradient norm says so.
#[test]
fn cantilever_newton_cg_converges_in_2d_and_3d() {
    let dir = std::env::temp_dir().join(format!("sparsegrad-ncg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (dim, size) in [("2", ["9", "4", "1"]), ("3", ["5", "3", "3"])] {
        let out = dir.join(format!("c{dim}")).display().to_string();
        let run = Command::new(env!("CARGO_BIN_EXE_cantilever"))
            .args([
                "--dim",
                dim,
                "--nx",
                size[0],
                "--ny",
                size[1],
                "--nz",
                size[2],
                "--iters",
                "300",
                "--algorithm",
                "newton-cg",
                "--out",
                &out,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("optimized ("))
            .unwrap_or_else(|| panic!("no summary in {stdout}"));
        assert!(line.contains("Solver converged"), "{line}");
        let number = |key: &str| -> f64 {
            line.split(key)
                .nth(1)
                .and_then(|r| r.split([',', ' ']).find(|t| !t.is_empty()))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        // The 2D summary reports the gradient norm; the 3D one the compliance only.
        if dim == "2" {
            let (loss, grad) = (number("loss "), number("|grad| "));
            assert!(grad <= 1e-8 * loss.abs().max(1.0), "{line}");
        }
    }
}
