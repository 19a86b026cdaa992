//! Stand-in for the GPU backend when the crate is built without the `cuda` feature: every GPU
//! request returns [`Error::NoDevice`] (same signatures as the feature's `cg.rs`, `device.rs`, `direct.rs`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::solve::Precision;
use crate::solve::{Factor, Iterative};
use crate::sparse::Structure;

fn no_device() -> Error {
    Error::NoDevice {
        reason: "sparsegrad was built without the `cuda` feature (rebuild with `--features cuda`)"
            .into(),
    }
}

pub(crate) fn device_info(ordinal: usize) -> Result<String> {
    let _ = ordinal;
    Err(no_device())
}

pub(crate) fn factor_direct(
    structure: &Arc<Structure>,
    values: &[f64],
    ordinal: usize,
    precision: Precision,
) -> Result<Arc<Factor>> {
    let _ = (structure, values, ordinal, precision);
    Err(no_device())
}

pub(crate) fn factor_iterative(
    structure: &Arc<Structure>,
    values: &[f64],
    settings: &Iterative,
    ordinal: usize,
) -> Result<Arc<Factor>> {
    let _ = (structure, values, settings, ordinal);
    Err(no_device())
}
