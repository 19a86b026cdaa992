//! The CUDA C kernels (compiled by NVRTC per device) and the handles of their compiled functions.

use cudarc::driver::CudaFunction;

/// Kernels for one floating-point type (`REAL` is `double` or `float`); the precision-crossing
/// and f64-only kernels are in the `double` module.
pub(super) const KERNELS: &str = r#"
extern "C" __global__ void tri_level(int m, int k, int n, int offset, const int* __restrict__ order,
    const int* __restrict__ ptr, const int* __restrict__ idx, const REAL* __restrict__ val, REAL* x) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)m * k) return;
  int r = order[offset + (int)(t % m)];
  REAL* xc = x + (t / m) * (long)n;
  REAL s = xc[r], d = (REAL)1;
  for (int e = ptr[r]; e < ptr[r + 1]; ++e) {
    int j = idx[e];
    if (j == r) d = val[e]; else s -= val[e] * xc[j];
  }
  xc[r] = s / d;
}
extern "C" __global__ void permute_in(int n, int k, const int* __restrict__ perm,
    const double* __restrict__ b, REAL* y) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int i = (int)(t % n);
  y[t] = (REAL)b[perm[i] + c * n];
}
extern "C" __global__ void permute_out(int n, int k, int add, const int* __restrict__ perm,
    const REAL* __restrict__ y, double* x) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int i = (int)(t % n);
  double v = (double)y[t];
  if (add) x[perm[i] + c * n] += v; else x[perm[i] + c * n] = v;
}
"#;

pub(super) const F64_KERNELS: &str = r#"
extern "C" __global__ void residual(int n, int k, const int* __restrict__ ptr,
    const int* __restrict__ idx, const double* __restrict__ val, const double* __restrict__ b,
    const double* __restrict__ x, double* r) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int row = (int)(t % n);
  const double* xc = x + c * n;
  double s = b[t];
  for (int e = ptr[row]; e < ptr[row + 1]; ++e) s -= val[e] * xc[idx[e]];
  r[t] = s;
}
extern "C" __global__ void spmm(int n, int k, const int* __restrict__ ptr,
    const int* __restrict__ idx, const double* __restrict__ val, const double* __restrict__ x,
    double* y) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  long c = t / n; int row = (int)(t % n);
  const double* xc = x + c * n;
  double s = 0.0;
  for (int e = ptr[row]; e < ptr[row + 1]; ++e) s += val[e] * xc[idx[e]];
  y[t] = s;
}
// out[c] += Σ_i a[i, c] b[i, c]; grid (blocks over rows, k), 256 threads.
extern "C" __global__ void col_dot(int n, const double* __restrict__ a,
    const double* __restrict__ b, double* out) {
  __shared__ double part[256];
  long c = blockIdx.y;
  double s = 0.0;
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    s += a[i + c * n] * b[i + c * n];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(&out[c], part[0]);
}
// x[:, c] += alpha[c] p[:, c]; r[:, c] -= alpha[c] q[:, c]
extern "C" __global__ void cg_step(int n, int k, const double* __restrict__ alpha,
    const double* __restrict__ p, const double* __restrict__ q, double* x, double* r) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  double a = alpha[t / n];
  x[t] += a * p[t];
  r[t] -= a * q[t];
}
// p = z + beta[c] p
extern "C" __global__ void cg_direction(int n, int k, const double* __restrict__ beta,
    const double* __restrict__ z, double* p) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  p[t] = z[t] + beta[t / n] * p[t];
}
extern "C" __global__ void jacobi(int n, int k, const double* __restrict__ inv_diag,
    const double* __restrict__ r, double* z) {
  long t = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (t >= (long)n * k) return;
  z[t] = inv_diag[t % n] * r[t];
}
// Ā_e = −Σ_c (Λ_ic X_jc + [lower, i ≠ j] Λ_jc X_ic)
extern "C" __global__ void grad_scatter(int nnz, int n, int k, int lower,
    const int* __restrict__ rows, const int* __restrict__ cols, const double* __restrict__ lam,
    const double* __restrict__ x, double* out) {
  long e = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (e >= nnz) return;
  int i = rows[e], j = cols[e];
  double s = 0.0;
  for (long c = 0; c < k; ++c) {
    s += lam[i + c * n] * x[j + c * n];
    if (lower && i != j) s += lam[j + c * n] * x[i + c * n];
  }
  out[e] = -s;
}
"#;

/// The kernels of one module.
pub(super) struct Kernels {
    pub(super) tri_level: CudaFunction,
    pub(super) permute_in: CudaFunction,
    pub(super) permute_out: CudaFunction,
}

pub(super) struct F64Kernels {
    pub(super) residual: CudaFunction,
    pub(super) spmm: CudaFunction,
    pub(super) col_dot: CudaFunction,
    pub(super) cg_step: CudaFunction,
    pub(super) cg_direction: CudaFunction,
    pub(super) jacobi: CudaFunction,
    pub(super) grad_scatter: CudaFunction,
}
