//! The JAX solve as an XLA FFI custom call (`jax.ffi.ffi_call("sparsegrad_rs_spsolve", …)`): the
//! solve that is not differentiated runs inside the compiled XLA program instead of a Python
//! callback — no Python round trip, no callback thread, and a failure is an XLA error whose text
//! is the library's message (prefixed with the Python exception's name, which the eager wrapper
//! raises as that exception).
//!
//! The handler follows XLA's C API (`xla/ffi/api/c_api.h`, API version 0.3): the structs below
//! mirror the header's layout field by field, and only the fields this handler reads are
//! used. Operands (vmap_method "expand_dims": every operand has the same number of leading batch
//! axes, of size 1 where it is not batched): `data` f32/f64 [..., nnz], `indices` and `indptr`
//! s32/s64 [..., nnz] / [..., n + 1], `b` f32/f64 [..., n] or [..., n, k] in data's dtype; one
//! result of b's batch-broadcast shape. Attributes: `method` and `precision` (strings, the
//! Python API's names), `symmetric` (s32: −1 for None, 0, 1). Batch elements that share A (data, indices and indptr not batched) are one
//! multi-column solve; others are factored one by one.

use std::ffi::{c_char, c_void, CString};

use nalgebra::DMatrix;
use sparsegrad::solve::node;
use sparsegrad::{Error, Method, Precision};

use crate::pattern::decide;
use crate::{error_kind, precision_of, solver_of, ErrorKind};

#[repr(C)]
struct ExtensionBase {
    struct_size: usize,
    kind: i32,
    next: *mut ExtensionBase,
}

/// `XLA_FFI_Extension_Metadata`.
const EXTENSION_METADATA: i32 = 1;
/// `XLA_FFI_ExecutionStage_EXECUTE`.
const STAGE_EXECUTE: i32 = 3;
/// `XLA_FFI_Error_Code_INVALID_ARGUMENT` / `_INTERNAL` / `_RESOURCE_EXHAUSTED`.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
/// Data types (`XLA_FFI_DataType`).
const S32: i32 = 4;
const S64: i32 = 5;
const F32: i32 = 11;
const F64: i32 = 12;
/// Attribute types (`XLA_FFI_AttrType`).
const ATTR_SCALAR: i32 = 3;
const ATTR_STRING: i32 = 4;

#[repr(C)]
struct ApiVersion {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    major: i32,
    minor: i32,
}

#[repr(C)]
struct Metadata {
    struct_size: usize,
    api_version: ApiVersion,
    traits: u32,
    state_type_id: i64,
}

#[repr(C)]
struct MetadataExtension {
    base: ExtensionBase,
    metadata: *mut Metadata,
}

#[repr(C)]
struct Buffer {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    dtype: i32,
    data: *mut c_void,
    rank: i64,
    dims: *mut i64,
}

#[repr(C)]
struct List {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    size: i64,
    types: *mut i32,
    items: *mut *mut c_void,
}

#[repr(C)]
struct Attrs {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    size: i64,
    types: *mut i32,
    names: *mut *mut ByteSpan,
    attrs: *mut *mut c_void,
}

#[repr(C)]
struct ByteSpan {
    ptr: *const c_char,
    len: usize,
}

#[repr(C)]
struct Scalar {
    dtype: i32,
    value: *mut c_void,
}

#[repr(C)]
struct CallFrame {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    api: *const Api,
    ctx: *mut c_void,
    stage: i32,
    args: List,
    rets: List,
    attrs: Attrs,
    future: *mut c_void,
}

#[repr(C)]
struct ErrorCreateArgs {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    message: *const c_char,
    errc: i32,
}

#[repr(C)]
struct Api {
    struct_size: usize,
    extension_start: *mut ExtensionBase,
    api_version: ApiVersion,
    internal_api: *const c_void,
    error_create: Option<unsafe extern "C" fn(*mut ErrorCreateArgs) -> *mut c_void>,
}

/// A failure: the Python exception's name, the message, and XLA's error code.
struct Failure {
    code: i32,
    text: String,
}

fn value_failure(text: String) -> Failure {
    Failure {
        code: INVALID_ARGUMENT,
        text: format!("ValueError: {text}"),
    }
}

fn library_failure(e: Error) -> Failure {
    let (code, name) = match error_kind(&e) {
        ErrorKind::Value => (INVALID_ARGUMENT, "ValueError"),
        ErrorKind::Memory => (RESOURCE_EXHAUSTED, "MemoryError"),
        ErrorKind::Io => (INTERNAL, "OSError"),
        ErrorKind::Solve => (INTERNAL, "SolveError"),
    };
    Failure {
        code,
        text: format!("{name}: {e}"),
    }
}

/// A typed view of one operand.
struct Operand<'a> {
    dtype: i32,
    dims: &'a [i64],
    data: *mut c_void,
}

impl Operand<'_> {
    /// Elements past the leading `lead` axes.
    fn per(&self, lead: usize) -> usize {
        self.dims[lead..]
            .iter()
            .map(|&d| d.max(0) as usize)
            .product()
    }

    /// Which of this operand's batch elements serves element `k` of the `batch`-shaped result
    /// (an axis of size 1 is broadcast).
    fn element(&self, batch: &[i64], k: usize) -> usize {
        let (mut rest, mut index, mut stride) = (k, 0, 1);
        for (axis, &full) in batch.iter().enumerate().rev() {
            let full = full.max(1) as usize;
            let i = rest % full;
            rest /= full;
            let own = self.dims[axis].max(1) as usize;
            index += if own == 1 { 0 } else { i } * stride;
            stride *= own;
        }
        index
    }

    /// Element `k` of the `batch`-shaped result's inputs, as f64 values.
    fn floats(&self, batch: &[i64], k: usize) -> Vec<f64> {
        let per = self.per(batch.len());
        let start = self.element(batch, k) * per;
        // SAFETY: XLA hands a buffer of the product of `dims` elements of `dtype`; `run` checked
        // that every leading axis is 1 or the result's, so `start + per` is inside it.
        unsafe {
            match self.dtype {
                F64 => {
                    std::slice::from_raw_parts((self.data as *const f64).add(start), per).to_vec()
                }
                _ => std::slice::from_raw_parts((self.data as *const f32).add(start), per)
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            }
        }
    }

    /// Element `k` as i64 indices.
    fn ints(&self, batch: &[i64], k: usize) -> Vec<i64> {
        let per = self.per(batch.len());
        let start = self.element(batch, k) * per;
        // SAFETY: as `floats`.
        unsafe {
            match self.dtype {
                S64 => {
                    std::slice::from_raw_parts((self.data as *const i64).add(start), per).to_vec()
                }
                _ => std::slice::from_raw_parts((self.data as *const i32).add(start), per)
                    .iter()
                    .map(|&v| i64::from(v))
                    .collect(),
            }
        }
    }

    /// Whether any leading axis is batched.
    fn batched(&self, lead: usize) -> bool {
        self.dims[..lead].iter().any(|&d| d > 1)
    }
}

/// # Safety
/// `buffer` points at an `XLA_FFI_Buffer` that lives for the call.
unsafe fn operand<'a>(buffer: *mut c_void) -> Operand<'a> {
    let b = &*(buffer as *const Buffer);
    Operand {
        dtype: b.dtype,
        dims: if b.rank > 0 {
            std::slice::from_raw_parts(b.dims, b.rank as usize)
        } else {
            &[]
        },
        data: b.data,
    }
}

/// The rows of a CSR matrix's entries, after the checks the Python wrapper makes.
fn rows_of_indptr(indptr: &[i64], nnz: usize) -> Result<Vec<i64>, Failure> {
    if indptr.first() != Some(&0) {
        return Err(value_failure(format!(
            "indptr[0] must be 0, got {}",
            indptr.first().copied().unwrap_or(0)
        )));
    }
    if let Some(k) = indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(value_failure(format!(
            "indptr decreases at position {}: {} then {}",
            k + 1,
            indptr[k],
            indptr[k + 1]
        )));
    }
    let last = indptr.last().copied().unwrap_or(0);
    if last != nnz as i64 {
        return Err(value_failure(format!(
            "indptr ends at {last} but there are {nnz} entries"
        )));
    }
    let mut rows = Vec::with_capacity(nnz);
    for (r, w) in indptr.windows(2).enumerate() {
        rows.extend(std::iter::repeat_n(r as i64, (w[1] - w[0]) as usize));
    }
    Ok(rows)
}

/// The attributes: `method`, `precision` and `symmetric`.
///
/// # Safety
/// `attrs` is the call frame's attribute list.
unsafe fn attributes(attrs: &Attrs) -> Result<(Method, Precision, Option<bool>), Failure> {
    let mut method = Method::Auto;
    let mut precision = Precision::F64;
    let mut symmetric = None;
    for i in 0..attrs.size.max(0) as usize {
        let name = &**attrs.names.add(i);
        let name = std::slice::from_raw_parts(name.ptr as *const u8, name.len);
        let value = *attrs.attrs.add(i);
        match (name, *attrs.types.add(i)) {
            (b"method", ATTR_STRING) => {
                method = string_attr(value, "method")?
                    .parse()
                    .map_err(library_failure)?;
            }
            (b"precision", ATTR_STRING) => {
                precision =
                    precision_of(string_attr(value, "precision")?).map_err(value_failure)?;
            }
            (b"symmetric", ATTR_SCALAR) => {
                let s = &*(value as *const Scalar);
                let v = match s.dtype {
                    S32 => *(s.value as *const i32) as i64,
                    S64 => *(s.value as *const i64),
                    other => {
                        return Err(value_failure(format!(
                            "the symmetric attribute has data type {other}, expected s32"
                        )))
                    }
                };
                symmetric = match v {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    Ok((method, precision, symmetric))
}

/// A string attribute's text.
///
/// # Safety
/// `value` points at an `XLA_FFI_ByteSpan` that lives for the call.
unsafe fn string_attr<'a>(value: *mut c_void, what: &str) -> Result<&'a str, Failure> {
    let s = &*(value as *const ByteSpan);
    let text = std::slice::from_raw_parts(s.ptr as *const u8, s.len);
    std::str::from_utf8(text).map_err(|_| value_failure(format!("{what} is not UTF-8")))
}

/// Solves every batch element into the result buffer.
///
/// # Safety
/// `frame` is a live call frame in the execute stage with four buffer operands and one result.
unsafe fn run(frame: &CallFrame) -> Result<(), Failure> {
    if frame.args.size != 4 || frame.rets.size != 1 {
        return Err(value_failure(format!(
            "sparsegrad_rs_spsolve takes 4 operands and 1 result, got {} and {}",
            frame.args.size, frame.rets.size
        )));
    }
    let arg = |i: usize| operand(*frame.args.items.add(i));
    let (data, indices, indptr, b) = (arg(0), arg(1), arg(2), arg(3));
    let out = operand(*frame.rets.items);
    let (method, precision, symmetric) = attributes(&frame.attrs)?;
    if !matches!(data.dtype, F32 | F64) || b.dtype != data.dtype || out.dtype != b.dtype {
        return Err(value_failure(format!(
            "data and b must be float32 or float64 of one dtype (XLA types {} and {})",
            data.dtype, b.dtype
        )));
    }
    if !matches!(indices.dtype, S32 | S64) || !matches!(indptr.dtype, S32 | S64) {
        return Err(value_failure(
            "indices and indptr must hold 32- or 64-bit integers".into(),
        ));
    }
    // The shapes the Python wrapper checked when it traced the call, checked again: nothing
    // below reads outside a buffer.
    let lead = data.dims.len().saturating_sub(1);
    let shape_error = || {
        value_failure(format!(
            "operand shapes data {:?}, indices {:?}, indptr {:?}, b {:?}, result {:?} do not fit one CSR solve",
            data.dims, indices.dims, indptr.dims, b.dims, out.dims
        ))
    };
    if data.dims.is_empty()
        || indices.dims.len() != lead + 1
        || indptr.dims.len() != lead + 1
        || !(lead + 1..=lead + 2).contains(&b.dims.len())
        || out.dims.len() != b.dims.len()
        || indptr.dims[lead] < 1
    {
        return Err(shape_error());
    }
    let batch = &out.dims[..lead];
    let count: usize = batch.iter().map(|&d| d.max(0) as usize).product();
    let n = indptr.dims[lead] as usize - 1;
    let nnz = data.dims[lead].max(0) as usize;
    let k = b.dims.get(lead + 1).map_or(1, |&d| d.max(0) as usize);
    let per = n * k;
    let fits = |o: &Operand<'_>| {
        o.dims[..lead]
            .iter()
            .zip(&out.dims[..lead])
            .all(|(&d, &full)| d == 1 || d == full)
    };
    if indices.dims[lead] as usize != nnz
        || b.dims[lead] as usize != n
        || out.dims[lead..] != b.dims[lead..]
        || ![&data, &indices, &indptr, &b].iter().all(|o| fits(o))
    {
        return Err(shape_error());
    }
    if count == 0 || per == 0 {
        return Ok(());
    }
    let shared = !(data.batched(lead) || indices.batched(lead) || indptr.batched(lead));
    let write = |element: usize, x: &DMatrix<f64>| {
        // x is n × k column-major; the result is row-major [n, k].
        // SAFETY: the result holds count · n · k elements of b's dtype.
        unsafe {
            for i in 0..n {
                for c in 0..k {
                    let at = element * per + i * k + c;
                    match out.dtype {
                        F64 => *(out.data as *mut f64).add(at) = x[(i, c)],
                        _ => *(out.data as *mut f32).add(at) = x[(i, c)] as f32,
                    }
                }
            }
        }
    };
    let rhs = |element: usize| -> DMatrix<f64> {
        let v = b.floats(batch, element);
        DMatrix::from_row_slice(n, k, &v)
    };
    let factor_of = |element: usize| -> Result<_, Failure> {
        let cols = indices.ints(batch, element);
        let rows = rows_of_indptr(&indptr.ints(batch, element), nnz)?;
        let values = data.floats(batch, element);
        if cols.iter().any(|&c| c < 0 || c as u64 >= n as u64) {
            let e = cols
                .iter()
                .position(|&c| c < 0 || c as u64 >= n as u64)
                .unwrap_or(0);
            return Err(value_failure(format!(
                "entry {e} at ({}, {}) is outside the {n} × {n} matrix",
                rows[e], cols[e]
            )));
        }
        let (pattern, values) =
            decide(n, &rows, &cols, &values, symmetric).map_err(library_failure)?;
        let solver = solver_of(method, pattern.storage, None, precision).map_err(value_failure)?;
        let factor = node::factor(&solver, &pattern.structure, &values).map_err(library_failure)?;
        Ok((factor, pattern, solver, values))
    };
    if shared && count > 1 {
        // One factorization; every batch element's right-hand sides solved together.
        let (factor, pattern, solver, values) = factor_of(0)?;
        let mut all = DMatrix::<f64>::zeros(n, count * k);
        for element in 0..count {
            let r = rhs(element);
            all.columns_mut(element * k, k).copy_from(&r);
        }
        let x = node::solve(&solver, factor.as_ref(), &pattern.structure, &values, &all)
            .map_err(library_failure)?;
        for element in 0..count {
            write(element, &x.columns(element * k, k).into_owned());
        }
        return Ok(());
    }
    for element in 0..count {
        let (factor, pattern, solver, values) = factor_of(element)?;
        let x = node::solve(
            &solver,
            factor.as_ref(),
            &pattern.structure,
            &values,
            &rhs(element),
        )
        .map_err(library_failure)?;
        write(element, &x);
    }
    Ok(())
}

/// The XLA FFI handler of `sparsegrad_rs_spsolve`.
///
/// # Safety
/// Called by XLA with a valid call frame.
unsafe extern "C" fn spsolve_handler(frame: *mut CallFrame) -> *mut c_void {
    let frame = &*frame;
    let ext = frame.extension_start;
    if !ext.is_null() && (*ext).kind == EXTENSION_METADATA {
        // XLA asks which API version this handler was built against.
        let metadata = &mut *(*(ext as *mut MetadataExtension)).metadata;
        metadata.api_version = ApiVersion {
            struct_size: std::mem::size_of::<ApiVersion>(),
            extension_start: std::ptr::null_mut(),
            major: 0,
            minor: 3,
        };
        metadata.traits = 0;
        return std::ptr::null_mut();
    }
    if frame.stage != STAGE_EXECUTE {
        return std::ptr::null_mut();
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(frame)))
        .unwrap_or_else(|_| {
            Err(Failure {
                code: INTERNAL,
                text: "SolveError: internal error (a panic in the sparsegrad FFI handler)".into(),
            })
        });
    match outcome {
        Ok(()) => std::ptr::null_mut(),
        Err(failure) => {
            let message = CString::new(failure.text.replace('\0', " ")).unwrap_or_default();
            let mut args = ErrorCreateArgs {
                struct_size: std::mem::size_of::<ErrorCreateArgs>(),
                extension_start: std::ptr::null_mut(),
                message: message.as_ptr(),
                errc: failure.code,
            };
            match (*frame.api).error_create {
                // XLA copies the message.
                Some(create) => create(&mut args),
                None => std::ptr::null_mut(),
            }
        }
    }
}

/// The handler's address, for `jax.ffi.register_ffi_target` (wrapped in a capsule by
/// `jax.ffi.pycapsule`).
#[pyo3::pyfunction]
pub(crate) fn ffi_spsolve_address() -> usize {
    spsolve_handler as *const () as usize
}
