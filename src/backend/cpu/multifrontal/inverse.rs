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
            let mut z_rr = vec![0.0; m * m];
            if let (Some(front), Some(p)) = (parent, self.parent[s]) {
                let pd = self.width(p) + self.below(p);
                let rel = &self.relative[self.row_ptr[s]..self.row_ptr[s + 1]];
                for (b, &cb) in rel.iter().enumerate() {
                    let col = &front[cb as usize * pd..(cb as usize + 1) * pd];
                    for (a, &ra) in rel.iter().enumerate() {
                        z_rr[b * m + a] = col[ra as usize];
                    }
                }
            }
            front_inverse(factor, w, Kind::Llt, &z_rr, block, &mut Scratch::default());
            if self.children(s).is_empty() {
                return Vec::new();
            }
            // This supernode's front of Z, full: [Z_DD Z_BDᵀ; Z_BD Z_RR].
            let mut front = vec![0.0; ld * ld];
            for j in 0..w {
                for i in j..w {
                    let v = block[j * ld + i];
                    front[j * ld + i] = v;
                    front[i * ld + j] = v;
                }
                for i in 0..m {
                    let v = block[j * ld + w + i];
                    front[j * ld + w + i] = v;
                    front[(w + i) * ld + j] = v;
                }
            }
            for b in 0..m {
                front[(w + b) * ld + w..(w + b + 1) * ld]
                    .copy_from_slice(&z_rr[b * m..(b + 1) * m]);
            }
            front
        };
        self.downward(split_blocks(z, &self.val_ptr), &op, None);
    }
}
