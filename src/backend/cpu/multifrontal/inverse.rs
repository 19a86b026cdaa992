//! Selected inversion over the multifrontal plan: parents before children on the plan's
//! [`Plan::downward`] schedule (the top separators' fronts in parallel, each cut subtree
//! sequentially), every supernode handed its parent's dense front of Z = A⁻¹ — its pattern rows
//! are rows of that front (the plan's `relative` map), so Z_RR is a gather from one dense
//! matrix, and the supernode's own front [Z_DD Z_BDᵀ; Z_BD Z_RR] goes on to its children.

use super::*;
use crate::backend::cpu::cholesky::Kind;
use crate::backend::cpu::selinv::{front_inverse, Scratch};

impl Plan {
    /// Z = A⁻¹ on the pattern of L, written into `z` in L's value layout, from the LLᵀ factor
    /// values `l` this plan computed.
    pub(crate) fn selected_inverse(&self, l: &[f64], z: &mut [f64]) {
        let op = |s: usize, block: &mut [f64], parent: Option<&[f64]>| -> Vec<f64> {
            let (w, m) = (self.width(s), self.below(s));
            let ld = w + m;
            let factor = &l[self.val_ptr[s]..self.val_ptr[s] + ld * w];
            // Z_RR gathered column by column from the parent's front (every entry written, so
            // the pooled buffer is never zeroed first).
            let mut z_rr = crate::pool::with_capacity(m * m);
            if let (Some(front), Some(p)) = (parent, self.parent[s]) {
                let pd = self.width(p) + self.below(p);
                let rel = &self.relative[self.row_ptr[s]..self.row_ptr[s + 1]];
                for &cb in rel {
                    let col = &front[cb as usize * pd..(cb as usize + 1) * pd];
                    z_rr.extend(rel.iter().map(|&ra| col[ra as usize]));
                }
            }
            z_rr.resize(m * m, 0.0);
            front_inverse(factor, w, Kind::Llt, &z_rr, block, &mut Scratch::default());
            if self.children(s).is_empty() {
                crate::pool::recycle(z_rr);
                return Vec::new();
            }
            // This supernode's front of Z, full, column by column: [Z_DD Z_BDᵀ; Z_BD Z_RR].
            let mut front = crate::pool::with_capacity(ld * ld);
            for j in 0..w {
                front.extend((0..j).map(|i| block[i * ld + j]));
                front.extend_from_slice(&block[j * ld + j..(j + 1) * ld]);
            }
            for b in 0..m {
                front.extend((0..w).map(|i| block[i * ld + w + b]));
                front.extend_from_slice(&z_rr[b * m..(b + 1) * m]);
            }
            crate::pool::recycle(z_rr);
            front
        };
        self.downward(split_blocks(z, &self.val_ptr), &op, None);
    }
}
