//! Traversal of the cut tree shared by the factorization and the solves: the sequential
//! subtrees in parallel, then the fronts above them as soon as their children finish
//! ([`Plan::upward`]), or top-down from the roots ([`Plan::downward`]).
//!
//! Contract: each supernode's task runs exactly once, after its children (upward) or its parent
//! (downward); the order inside a subtree is its postorder, independent of the thread count. The
//! first error stops the traversal and is returned.

use std::collections::HashMap;

use faer::Par;

use super::*;

impl Plan {
    /// Runs `op` on every supernode, children before parents: each cut subtree sequentially
    /// (postorder, a stack of results), the supernodes above as soon as their children are done,
    /// siblings in parallel; `op` gets the supernode's block and its children's results.
    ///
    /// With `subtree`, a cut subtree is run by it instead, handed all its supernodes' blocks.
    pub(super) fn upward<T: Send, E: Send, S: Send>(
        &self,
        blocks: Vec<&mut [S]>,
        op: &UpOp<'_, T, E, S>,
        subtree: Option<&SubtreeUp<'_, T, E, S>>,
    ) -> std::result::Result<(), E> {
        use rayon::prelude::*;
        let context = Context::new(blocks);
        let results: Vec<_> = self
            .roots
            .par_iter()
            .map(|&sn| self.up(sn, &context, op, subtree))
            .collect();
        for result in results {
            result?;
        }
        Ok(())
    }

    pub(super) fn up<T: Send, E: Send, S: Send>(
        &self,
        sn: usize,
        context: &Context<'_, S>,
        op: &UpOp<'_, T, E, S>,
        subtree: Option<&SubtreeUp<'_, T, E, S>>,
    ) -> std::result::Result<T, E> {
        use rayon::prelude::*;
        if let Some(&t) = self.subtree_of.get(&sn) {
            let nodes = self.subtree(t);
            let blocks: Vec<&mut [S]> = context.take_all(nodes);
            if let Some(whole) = subtree {
                return whole(t, blocks);
            }
            let mut stack: Vec<T> = Vec::new();
            for (&s, block) in nodes.iter().zip(blocks) {
                let own = stack.split_off(stack.len() - self.children(s).len());
                stack.push(op(s, block, own, Par::Seq)?);
            }
            // Postorder: every result but the root's was taken by its parent.
            if let Some(root) = stack.pop() {
                return Ok(root);
            }
        }
        let own: Vec<T> = self
            .children(sn)
            .par_iter()
            .map(|&c| self.up(c, context, op, subtree))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<std::result::Result<_, _>>()?;
        let par = if self.front_flops[sn] >= PARALLEL_FRONT_FLOPS {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let block = context.take(sn);
        op(sn, block, own, par)
    }

    /// Runs `op` on every supernode, parents before children, handing each the value its
    /// parent's `op` returned (`None` at roots): the top supernodes first, siblings in parallel,
    /// then each cut subtree sequentially.
    ///
    /// With `subtree`, a cut subtree is run by it instead, handed all its supernodes' blocks.
    pub(super) fn downward<S: Real>(
        &self,
        blocks: Vec<&mut [S]>,
        op: &DownOp<'_, S>,
        subtree: Option<&SubtreeDown<'_, S>>,
    ) {
        use rayon::prelude::*;
        let context = Context::new(blocks);
        self.roots
            .par_iter()
            .for_each(|&sn| self.down(sn, None, &context, op, subtree));
    }

    pub(super) fn down<S: Real>(
        &self,
        sn: usize,
        parent: Option<&[S]>,
        context: &Context<'_, S>,
        op: &DownOp<'_, S>,
        subtree: Option<&SubtreeDown<'_, S>>,
    ) {
        use rayon::prelude::*;
        if let Some(&t) = self.subtree_of.get(&sn) {
            let nodes = self.subtree(t);
            let blocks: Vec<&mut [S]> = context.take_all(nodes);
            if let Some(whole) = subtree {
                whole(t, blocks, parent);
                return;
            }
            // Reverse postorder: every parent before its children. A parent's result lives
            // until its first child in postorder (the last one here) is done.
            let mut fronts: HashMap<usize, Vec<S>> = HashMap::new();
            for (&s, block) in nodes.iter().zip(blocks).rev() {
                let from = match self.parent[s] {
                    Some(p) if s != sn => fronts.get(&p).map(Vec::as_slice),
                    _ => parent,
                };
                let front = op(s, block, from);
                if let Some(p) = self.parent[s].filter(|_| s != sn) {
                    if self.children(p).first() == Some(&s) {
                        if let Some(front) = fronts.remove(&p) {
                            S::recycle(front);
                        }
                    }
                }
                if !self.children(s).is_empty() {
                    fronts.insert(s, front);
                }
            }
            return;
        }
        let block = context.take(sn);
        let front = op(sn, block, parent);
        self.children(sn)
            .par_iter()
            .for_each(|&c| self.down(c, Some(&front), context, op, subtree));
        S::recycle(front);
    }
}
