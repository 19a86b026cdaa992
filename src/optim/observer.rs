//! Progress reporting for argmin runs: an observer that records and shows iteration, loss,
//! gradient norm and elapsed time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argmin::core::observers::Observe;
use argmin::core::{State, KV};

use super::StateOf;

/// One row of the optimization history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Iteration number (0 = the initial point).
    pub iteration: u64,
    /// Loss at the current iterate.
    pub loss: f64,
    /// Best loss so far.
    pub best_loss: f64,
    /// Euclidean norm of the gradient at the current iterate.
    pub gradient_norm: f64,
    /// Wall time since the observer was created.
    pub elapsed: Duration,
}

/// How [`ProgressObserver`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Record only.
    Silent,
    /// A line per reported iteration on stderr.
    Lines,
    /// A single progress bar redrawn in place on stderr (indicatif, feature `progress`, on by
    /// default; without the feature, lines as [`ProgressStyle::Lines`]).
    Bar,
}

/// An argmin observer recording iteration, loss, gradient norm and elapsed time, and showing them.
#[derive(Debug, Clone)]
pub struct ProgressObserver {
    start: Instant,
    total: u64,
    every: u64,
    style: ProgressStyle,
    history: Arc<Mutex<Vec<Record>>>,
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressObserver {
    /// An observer for a run of at most `total` iterations, printing every `every` iterations.
    pub fn new(total: u64, every: u64, style: ProgressStyle) -> Self {
        ProgressObserver {
            start: Instant::now(),
            total,
            every: every.max(1),
            style,
            history: Arc::default(),
            #[cfg(feature = "progress")]
            bar: (style == ProgressStyle::Bar).then(|| {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "[{bar:30}] {pos:>5}/{len}  {msg}  {elapsed_precise}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("#>-"),
                );
                bar
            }),
        }
    }

    /// A handle to the records, readable after the run.
    pub fn history(&self) -> Arc<Mutex<Vec<Record>>> {
        self.history.clone()
    }

    fn report(&self, r: &Record, last: bool) {
        match self.style {
            ProgressStyle::Silent => {}
            ProgressStyle::Lines => eprintln!(
                "iter {:>5}  loss {:.6e}  best {:.6e}  |grad| {:.3e}  {:.2} s",
                r.iteration,
                r.loss,
                r.best_loss,
                r.gradient_norm,
                r.elapsed.as_secs_f64()
            ),
            ProgressStyle::Bar => self.draw_bar(r, last),
        }
    }

    #[cfg(feature = "progress")]
    fn draw_bar(&self, r: &Record, last: bool) {
        if let Some(bar) = &self.bar {
            bar.set_position(r.iteration.min(self.total));
            bar.set_message(format!(
                "loss {:.6e}  |grad| {:.3e}",
                r.loss, r.gradient_norm
            ));
            if last {
                bar.finish();
            }
        }
    }

    #[cfg(not(feature = "progress"))]
    fn draw_bar(&self, r: &Record, last: bool) {
        let _ = last;
        eprintln!(
            "iter {:>5}/{}  loss {:.6e}  |grad| {:.3e}  {:.2} s",
            r.iteration,
            self.total,
            r.loss,
            r.gradient_norm,
            r.elapsed.as_secs_f64()
        );
    }

    /// `offset`: argmin calls `observe_iter` before it counts the finished iteration.
    fn record<H>(&mut self, state: &StateOf<H>, offset: u64) -> Record {
        let record = Record {
            iteration: state.get_iter() + offset,
            loss: state.get_cost(),
            best_loss: state.get_best_cost(),
            gradient_norm: state
                .get_gradient()
                .map_or(f64::NAN, |g| g.iter().map(|v| v * v).sum::<f64>().sqrt()),
            elapsed: self.start.elapsed(),
        };
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        record
    }
}

impl<H> Observe<StateOf<H>> for ProgressObserver {
    fn observe_init(
        &mut self,
        _name: &str,
        state: &StateOf<H>,
        _kv: &KV,
    ) -> std::result::Result<(), argmin::core::Error> {
        let r = self.record(state, 0);
        self.report(&r, false);
        Ok(())
    }
    fn observe_iter(
        &mut self,
        state: &StateOf<H>,
        _kv: &KV,
    ) -> std::result::Result<(), argmin::core::Error> {
        let r = self.record(state, 1);
        if r.iteration % self.every == 0 {
            self.report(&r, false);
        }
        Ok(())
    }
    fn observe_final(
        &mut self,
        state: &StateOf<H>,
    ) -> std::result::Result<(), argmin::core::Error> {
        let last = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .copied();
        if let Some(r) = last {
            let already_shown = self.style == ProgressStyle::Lines && r.iteration % self.every == 0;
            if !already_shown {
                self.report(
                    &Record {
                        best_loss: state.get_best_cost(),
                        ..r
                    },
                    true,
                );
            }
        }
        Ok(())
    }
}
