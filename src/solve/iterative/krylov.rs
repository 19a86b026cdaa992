//! The Krylov iterations for one right-hand side: preconditioned CG, MINRES (Paige–Saunders),
//! BiCGSTAB (right-preconditioned) and restarted GMRES(m) (right-preconditioned, Givens rotations).
//! Each starts from the x it is given, stops on the true residual
//! ‖b − A x‖ ≤ max(rtol ‖b‖, atol) and otherwise returns [`Error::NotConverged`].

use super::precond::{Csr, Precond};
use super::{Convergence, Krylov};
use crate::error::{Error, Result};

/// A matrix (or its transpose) with its preconditioner and the stopping rule.
pub(crate) struct System<'a> {
    pub(crate) a: &'a Csr,
    pub(crate) m: &'a Precond,
    pub(crate) transpose: bool,
    pub(crate) rtol: f64,
    pub(crate) atol: f64,
    pub(crate) max_iterations: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// y += alpha x
fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

impl System<'_> {
    fn mul(&self, x: &[f64], y: &mut [f64]) {
        self.a.mul(x, y, self.transpose);
    }
    fn precondition(&self, r: &[f64], z: &mut [f64]) {
        self.m.apply(r, z, self.transpose);
    }
    /// r = b − A x; returns ‖r‖.
    fn residual(&self, b: &[f64], x: &[f64], r: &mut [f64]) -> f64 {
        self.mul(x, r);
        for (ri, bi) in r.iter_mut().zip(b) {
            *ri = bi - *ri;
        }
        norm(r)
    }

    /// Solves one column in place (`x` holds the initial guess).
    pub(crate) fn solve(&self, method: Krylov, b: &[f64], x: &mut [f64]) -> Result<Convergence> {
        let b_norm = norm(b);
        let target = (self.rtol * b_norm).max(self.atol);
        let mut r = vec![0.0; b.len()];
        let r_norm = self.residual(b, x, &mut r);
        let rel = |r_norm: f64| {
            if b_norm > 0.0 {
                r_norm / b_norm
            } else {
                r_norm
            }
        };
        if r_norm <= target {
            return Ok(Convergence {
                iterations: 0,
                relative_residual: rel(r_norm),
            });
        }
        let (iterations, r_norm) = match method {
            Krylov::Cg => self.cg(x, r, target),
            Krylov::Minres => self.minres(b, x, r, target)?,
            Krylov::BiCgStab => self.bicgstab(b, x, r, target),
            Krylov::Gmres { restart } => self.gmres(b, x, r, target, restart.max(1)),
        };
        if r_norm <= target {
            Ok(Convergence {
                iterations,
                relative_residual: rel(r_norm),
            })
        } else {
            Err(Error::NotConverged {
                iterations,
                relative_residual: rel(r_norm),
            })
        }
    }

    fn cg(&self, x: &mut [f64], mut r: Vec<f64>, target: f64) -> (usize, f64) {
        let n = x.len();
        let mut z = vec![0.0; n];
        self.precondition(&r, &mut z);
        let mut p = z.clone();
        let mut q = vec![0.0; n];
        let mut rz = dot(&r, &z);
        let mut r_norm = norm(&r);
        for it in 1..=self.max_iterations {
            self.mul(&p, &mut q);
            let alpha = rz / dot(&p, &q);
            if !alpha.is_finite() {
                return (it, r_norm);
            }
            axpy(alpha, &p, x);
            axpy(-alpha, &q, &mut r);
            r_norm = norm(&r);
            if r_norm <= target {
                return (it, r_norm);
            }
            self.precondition(&r, &mut z);
            let rz_new = dot(&r, &z);
            let beta = rz_new / rz;
            rz = rz_new;
            for (pi, zi) in p.iter_mut().zip(&z) {
                *pi = zi + beta * *pi;
            }
        }
        (self.max_iterations, r_norm)
    }

    /// Preconditioned MINRES (as in Paige & Saunders 1975 / SciPy's `minres`); the estimate of
    /// the residual decides when to check the true residual.
    fn minres(&self, b: &[f64], x: &mut [f64], r1: Vec<f64>, target: f64) -> Result<(usize, f64)> {
        let n = x.len();
        let not_pd = || Error::Unsupported {
            reason: "MINRES needs a positive definite preconditioner (use Jacobi, IC(0) or none)"
                .into(),
        };
        let mut y = vec![0.0; n];
        self.precondition(&r1, &mut y);
        let beta1 = dot(&r1, &y);
        if beta1 < 0.0 {
            return Err(not_pd());
        }
        let beta1 = beta1.sqrt();
        let mut r1 = r1;
        let mut r2 = r1.clone();
        let (mut oldb, mut beta, mut dbar, mut epsln) = (0.0, beta1, 0.0, 0.0);
        let mut phibar = beta1;
        let (mut cs, mut sn) = (-1.0f64, 0.0f64);
        let mut w = vec![0.0; n];
        let mut w2 = vec![0.0; n];
        let mut v = vec![0.0; n];
        let mut scratch = vec![0.0; n];
        let mut r_norm = norm(&r1);
        // The estimate phibar is ‖r‖ in the M⁻¹ norm; scale the target into it.
        let estimate_target = target * beta1 / r_norm;
        for it in 1..=self.max_iterations {
            let s = 1.0 / beta;
            for (vi, yi) in v.iter_mut().zip(&y) {
                *vi = s * yi;
            }
            self.mul(&v, &mut y);
            if it >= 2 {
                axpy(-beta / oldb, &r1, &mut y);
            }
            let alfa = dot(&v, &y);
            axpy(-alfa / beta, &r2, &mut y);
            std::mem::swap(&mut r1, &mut r2);
            r2.copy_from_slice(&y);
            self.precondition(&r2, &mut y);
            oldb = beta;
            let b2 = dot(&r2, &y);
            if b2 < 0.0 {
                return Err(not_pd());
            }
            beta = b2.sqrt();
            let oldeps = epsln;
            let delta = cs * dbar + sn * alfa;
            let gbar = sn * dbar - cs * alfa;
            epsln = sn * beta;
            dbar = -cs * beta;
            let gamma = gbar.hypot(beta).max(f64::EPSILON);
            cs = gbar / gamma;
            sn = beta / gamma;
            let phi = cs * phibar;
            phibar *= sn;
            // w ← (v − oldeps w1 − delta w2) / gamma with w1 = old w2, w2 = old w.
            for i in 0..n {
                let w1 = w2[i];
                w2[i] = w[i];
                w[i] = (v[i] - oldeps * w1 - delta * w2[i]) / gamma;
            }
            axpy(phi, &w, x);
            if phibar <= estimate_target || beta == 0.0 || it == self.max_iterations {
                r_norm = self.residual(b, x, &mut scratch);
                if r_norm <= target || beta == 0.0 {
                    return Ok((it, r_norm));
                }
            }
        }
        Ok((self.max_iterations, r_norm))
    }

    fn bicgstab(&self, b: &[f64], x: &mut [f64], mut r: Vec<f64>, target: f64) -> (usize, f64) {
        let n = x.len();
        let r_hat = r.clone();
        let (mut rho, mut alpha, mut omega) = (1.0, 1.0, 1.0);
        let mut v = vec![0.0; n];
        let mut p = vec![0.0; n];
        let (mut y, mut s, mut z, mut t) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let mut r_norm = norm(&r);
        for it in 1..=self.max_iterations {
            let rho_new = dot(&r_hat, &r);
            let beta = (rho_new / rho) * (alpha / omega);
            rho = rho_new;
            for i in 0..n {
                p[i] = r[i] + beta * (p[i] - omega * v[i]);
            }
            self.precondition(&p, &mut y);
            self.mul(&y, &mut v);
            alpha = rho / dot(&r_hat, &v);
            for i in 0..n {
                s[i] = r[i] - alpha * v[i];
            }
            if !alpha.is_finite() {
                return (it, f64::INFINITY);
            }
            axpy(alpha, &y, x);
            let s_norm = norm(&s);
            if s_norm <= target {
                return (it, self.residual(b, x, &mut r));
            }
            self.precondition(&s, &mut z);
            self.mul(&z, &mut t);
            omega = dot(&t, &s) / dot(&t, &t);
            axpy(omega, &z, x);
            for i in 0..n {
                r[i] = s[i] - omega * t[i];
            }
            r_norm = norm(&r);
            if r_norm <= target {
                return (it, self.residual(b, x, &mut s));
            }
            if !(omega.is_finite() && omega != 0.0 && rho != 0.0) {
                return (it, r_norm);
            }
        }
        (self.max_iterations, r_norm)
    }

    fn gmres(
        &self,
        b: &[f64],
        x: &mut [f64],
        mut r: Vec<f64>,
        target: f64,
        restart: usize,
    ) -> (usize, f64) {
        let n = x.len();
        let mut r_norm = norm(&r);
        let mut it = 0;
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(restart + 1);
        let mut directions: Vec<Vec<f64>> = Vec::with_capacity(restart);
        let mut w = vec![0.0; n];
        while it < self.max_iterations {
            basis.clear();
            directions.clear();
            basis.push(r.iter().map(|v| v / r_norm).collect());
            let mut h = vec![vec![0.0; restart]; restart + 1];
            let (mut cs, mut sn) = (vec![0.0; restart], vec![0.0; restart]);
            let mut g = vec![0.0; restart + 1];
            g[0] = r_norm;
            let mut used = 0;
            for j in 0..restart {
                let mut z = vec![0.0; n];
                self.precondition(&basis[j], &mut z);
                self.mul(&z, &mut w);
                directions.push(z);
                for (i, vi) in basis.iter().enumerate() {
                    h[i][j] = dot(&w, vi);
                    axpy(-h[i][j], vi, &mut w);
                }
                let h_next = norm(&w);
                h[j + 1][j] = h_next;
                for i in 0..j {
                    let t = cs[i] * h[i][j] + sn[i] * h[i + 1][j];
                    h[i + 1][j] = -sn[i] * h[i][j] + cs[i] * h[i + 1][j];
                    h[i][j] = t;
                }
                let d = h[j][j].hypot(h[j + 1][j]);
                if d == 0.0 {
                    break;
                }
                cs[j] = h[j][j] / d;
                sn[j] = h[j + 1][j] / d;
                h[j][j] = d;
                h[j + 1][j] = 0.0;
                g[j + 1] = -sn[j] * g[j];
                g[j] *= cs[j];
                used = j + 1;
                it += 1;
                if g[j + 1].abs() <= target || it >= self.max_iterations || h_next == 0.0 {
                    break;
                }
                basis.push(w.iter().map(|v| v / h_next).collect());
            }
            // Back substitution H y = g, x += Σ y_i z_i.
            let mut yv = vec![0.0; used];
            for i in (0..used).rev() {
                let s: f64 = (i + 1..used).map(|l| h[i][l] * yv[l]).sum();
                yv[i] = (g[i] - s) / h[i][i];
            }
            for (yi, zi) in yv.iter().zip(&directions) {
                axpy(*yi, zi, x);
            }
            r_norm = self.residual(b, x, &mut r);
            if r_norm <= target || used == 0 || !r_norm.is_finite() {
                break;
            }
        }
        (it, r_norm)
    }
}
