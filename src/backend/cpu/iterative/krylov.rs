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
        if b_norm == 0.0 {
            // The exact solution of A x = 0 is 0, whatever the initial guess (warm starts).
            x.fill(0.0);
            return Ok(Convergence {
                iterations: 0,
                relative_residual: 0.0,
            });
        }
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
            Krylov::Cg => self.cg(x, r, target)?,
            Krylov::Minres => self.minres(b, x, r, target)?,
            Krylov::BiCgStab => self.bicgstab(b, x, r, target)?,
            Krylov::Gmres { restart } => self.gmres(b, x, r, target, restart)?,
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

    /// Preconditioned CG. pᵀAp ≤ 0 or rᵀM⁻¹r ≤ 0 cannot happen for SPD A and M: it is reported
    /// as [`Error::Breakdown`] (A or the preconditioner is not positive definite, or A is singular
    /// and the iteration left its range).
    fn cg(&self, x: &mut [f64], mut r: Vec<f64>, target: f64) -> Result<(usize, f64)> {
        let n = x.len();
        let mut z = vec![0.0; n];
        self.precondition(&r, &mut z);
        let mut p = z.clone();
        let mut q = vec![0.0; n];
        let mut rz = dot(&r, &z);
        let mut r_norm = norm(&r);
        let breakdown = |iteration: usize, reason: String| Error::Breakdown {
            method: "CG",
            iteration,
            reason,
        };
        if rz <= 0.0 || !rz.is_finite() {
            return Err(breakdown(
                0,
                format!("rᵀM⁻¹r = {rz:e} ≤ 0: the preconditioner is not positive definite"),
            ));
        }
        for it in 1..=self.max_iterations {
            self.mul(&p, &mut q);
            let pq = dot(&p, &q);
            if pq <= 0.0 || !pq.is_finite() {
                return Err(breakdown(
                    it,
                    format!("pᵀAp = {pq:e} ≤ 0: A is not positive definite (or singular); use MINRES for indefinite, or a direct solver"),
                ));
            }
            let alpha = rz / pq;
            axpy(alpha, &p, x);
            axpy(-alpha, &q, &mut r);
            r_norm = norm(&r);
            if r_norm <= target {
                return Ok((it, r_norm));
            }
            self.precondition(&r, &mut z);
            let rz_new = dot(&r, &z);
            if rz_new <= 0.0 || !rz_new.is_finite() {
                return Err(breakdown(
                    it,
                    format!("rᵀM⁻¹r = {rz_new:e} ≤ 0: the preconditioner is not positive definite"),
                ));
            }
            let beta = rz_new / rz;
            rz = rz_new;
            for (pi, zi) in p.iter_mut().zip(&z) {
                *pi = zi + beta * *pi;
            }
        }
        Ok((self.max_iterations, r_norm))
    }

    /// Preconditioned MINRES (as in Paige & Saunders 1975 / SciPy's `minres`); the estimate of
    /// the residual decides when to check the true residual.
    fn minres(&self, b: &[f64], x: &mut [f64], r1: Vec<f64>, target: f64) -> Result<(usize, f64)> {
        let n = x.len();
        let not_pd = || Error::Preconditioner {
            preconditioner: "MINRES's",
            row: 0,
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
        let mut a_norm = 0.0f64;
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
            // Lanczos has exhausted the Krylov space when β vanishes relative to ‖T‖ (exactly
            // zero only in exact arithmetic); dividing by it would produce garbage.
            a_norm = a_norm.max(alfa.abs() + oldb + beta);
            let exhausted = beta <= 16.0 * f64::EPSILON * a_norm;
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
            if phibar <= estimate_target || exhausted || it == self.max_iterations {
                r_norm = self.residual(b, x, &mut scratch);
                if r_norm <= target {
                    return Ok((it, r_norm));
                }
                if exhausted {
                    return Err(Error::Breakdown {
                        method: "MINRES",
                        iteration: it,
                        reason: format!(
                            "the Krylov space is exhausted (β = 0) at relative residual {:e}: A is singular and b is not in its range",
                            r_norm / norm(b)
                        ),
                    });
                }
            }
        }
        Ok((self.max_iterations, r_norm))
    }

    /// BiCGSTAB restarted from the true residual whenever a cycle breaks down (ρ = r̂ᵀr, r̂ᵀv or
    /// ω vanish) or its recursively updated residual claims convergence that the true residual
    /// does not confirm. Three restarts in a row that do not reduce the true residual are
    /// reported as [`Error::Breakdown`] (stagnation), naming the last cause.
    fn bicgstab(
        &self,
        b: &[f64],
        x: &mut [f64],
        mut r: Vec<f64>,
        target: f64,
    ) -> Result<(usize, f64)> {
        let mut it = 0;
        let mut best = norm(&r);
        let mut futile = 0;
        loop {
            let cause = self.bicgstab_cycle(x, &mut r, target, &mut it);
            let r_norm = self.residual(b, x, &mut r);
            if r_norm <= target || it >= self.max_iterations || !r_norm.is_finite() {
                return Ok((it, r_norm));
            }
            if r_norm < best {
                best = r_norm;
                futile = 0;
            } else {
                futile += 1;
            }
            if futile >= 3 {
                return Err(Error::Breakdown {
                    method: "BiCGSTAB",
                    iteration: it,
                    reason: format!(
                        "stagnated at relative residual {:e}: restarted {futile} times from the true residual without reducing it (last cycle: {cause}); try GMRES",
                        best / norm(b)
                    ),
                });
            }
        }
    }

    /// One BiCGSTAB cycle from the residual `r` (shadow residual r̂ = r); returns why it stopped.
    fn bicgstab_cycle(
        &self,
        x: &mut [f64],
        r: &mut [f64],
        target: f64,
        it: &mut usize,
    ) -> &'static str {
        let n = x.len();
        let r_hat = r.to_vec();
        let tiny = f64::EPSILON * f64::EPSILON;
        let (mut rho, mut alpha, mut omega) = (1.0, 1.0, 1.0);
        let mut v = vec![0.0; n];
        let mut p = vec![0.0; n];
        let (mut y, mut s, mut z, mut t) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let r_hat_norm = norm(&r_hat);
        while *it < self.max_iterations {
            *it += 1;
            let rho_new = dot(&r_hat, r);
            if rho_new.abs() <= tiny * r_hat_norm * norm(r) || !rho_new.is_finite() {
                return "ρ = r̂ᵀr vanished";
            }
            let beta = (rho_new / rho) * (alpha / omega);
            rho = rho_new;
            for i in 0..n {
                p[i] = r[i] + beta * (p[i] - omega * v[i]);
            }
            self.precondition(&p, &mut y);
            self.mul(&y, &mut v);
            let rv = dot(&r_hat, &v);
            if rv == 0.0 || !rv.is_finite() {
                return "r̂ᵀv vanished";
            }
            alpha = rho / rv;
            for i in 0..n {
                s[i] = r[i] - alpha * v[i];
            }
            axpy(alpha, &y, x);
            if norm(&s) <= target {
                return "the updated residual converged";
            }
            self.precondition(&s, &mut z);
            self.mul(&z, &mut t);
            let tt = dot(&t, &t);
            omega = if tt > 0.0 { dot(&t, &s) / tt } else { 0.0 };
            if omega == 0.0 || !omega.is_finite() {
                r.copy_from_slice(&s);
                return "ω vanished";
            }
            axpy(omega, &z, x);
            for i in 0..n {
                r[i] = s[i] - omega * t[i];
            }
            if norm(r) <= target {
                return "the updated residual converged";
            }
        }
        "the iteration limit was reached"
    }

    /// Right-preconditioned GMRES(m), m capped at n (the Krylov space cannot grow further) and
    /// at the iteration limit. The basis is allocated up front: a restart length whose basis
    /// cannot be allocated is [`Error::OutOfMemory`], not an abort.
    fn gmres(
        &self,
        b: &[f64],
        x: &mut [f64],
        mut r: Vec<f64>,
        target: f64,
        restart: usize,
    ) -> Result<(usize, f64)> {
        let n = x.len();
        let m = restart.clamp(1, n.max(1)).min(self.max_iterations.max(1));
        let mut r_norm = norm(&r);
        let mut it = 0;
        // Basis V (m + 1 vectors) and preconditioned directions Z (m vectors), each n long.
        let words = (2 * m + 1).checked_mul(n);
        let mut basis: Vec<f64> = Vec::new();
        let mut directions: Vec<f64> = Vec::new();
        let reserved = words.is_some_and(|w| {
            basis.try_reserve_exact(w - m * n).is_ok()
                && directions.try_reserve_exact(m * n).is_ok()
        });
        if !reserved {
            return Err(Error::OutOfMemory {
                what: format!(
                    "the GMRES({restart}) Krylov basis ({} vectors of length {n})",
                    2 * m + 1
                ),
                reason: "the allocation failed; use a smaller restart length".into(),
            });
        }
        let mut w = vec![0.0; n];
        let mut z = vec![0.0; n];
        while it < self.max_iterations {
            basis.clear();
            directions.clear();
            basis.extend(r.iter().map(|v| v / r_norm));
            // Column j of the Hessenberg matrix (j + 2 entries), built as the cycle goes.
            let mut h: Vec<Vec<f64>> = Vec::with_capacity(m);
            let (mut cs, mut sn) = (Vec::with_capacity(m), Vec::with_capacity(m));
            let mut g = vec![r_norm];
            for j in 0..m {
                self.precondition(&basis[j * n..(j + 1) * n], &mut z);
                self.mul(&z, &mut w);
                directions.extend_from_slice(&z);
                let mut hj = vec![0.0; j + 2];
                for (i, hij) in hj.iter_mut().enumerate().take(j + 1) {
                    let vi = &basis[i * n..(i + 1) * n];
                    *hij = dot(&w, vi);
                    axpy(-*hij, vi, &mut w);
                }
                let h_next = norm(&w);
                hj[j + 1] = h_next;
                for i in 0..j {
                    let (c, s): (f64, f64) = (cs[i], sn[i]);
                    let t = c * hj[i] + s * hj[i + 1];
                    hj[i + 1] = -s * hj[i] + c * hj[i + 1];
                    hj[i] = t;
                }
                let d = hj[j].hypot(hj[j + 1]);
                if d == 0.0 {
                    break;
                }
                cs.push(hj[j] / d);
                sn.push(hj[j + 1] / d);
                hj[j] = d;
                hj[j + 1] = 0.0;
                g.push(-sn[j] * g[j]);
                g[j] *= cs[j];
                h.push(hj);
                it += 1;
                if g[j + 1].abs() <= target || it >= self.max_iterations || h_next == 0.0 {
                    break;
                }
                basis.extend(w.iter().map(|v| v / h_next));
            }
            // Back substitution H y = g, x += Σ y_i z_i.
            let used = h.len();
            let mut yv = vec![0.0; used];
            for i in (0..used).rev() {
                let s: f64 = (i + 1..used).map(|l| h[l][i] * yv[l]).sum();
                yv[i] = (g[i] - s) / h[i][i];
            }
            for (i, yi) in yv.iter().enumerate() {
                axpy(*yi, &directions[i * n..(i + 1) * n], x);
            }
            r_norm = self.residual(b, x, &mut r);
            if r_norm <= target || used == 0 || !r_norm.is_finite() {
                break;
            }
        }
        Ok((it, r_norm))
    }
}
