"""Types of the native module (``sparsegrad_rs._core``, built from python/src/lib.rs)."""
from typing import Any, Optional

import numpy as np
from numpy.typing import NDArray

class SolveError(RuntimeError):
    """A factorization or solve failed (not positive definite, singular, ill-conditioned, ...)."""

class Factorization:
    @property
    def n(self) -> int: ...
    def solve(self, b: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def solve_transpose(self, b: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def grad_values(
        self, adjoint: NDArray[np.float64], x: NDArray[np.float64]
    ) -> NDArray[np.float64]: ...
    def info(self) -> dict[str, Any]: ...

def factorize(
    n: int,
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    data: NDArray[np.float64],
    method: str = "auto",
    symmetric: Optional[bool] = None,
    condition_limit: Optional[float] = None,
) -> Factorization: ...
def clear_patterns() -> None: ...
def release_memory() -> int: ...
def cached_patterns() -> int: ...
def analyses_of(
    n: int, rows: NDArray[np.int64], cols: NDArray[np.int64], symmetric: bool
) -> Optional[tuple[int, int]]: ...
def factorize_batch(
    n: int,
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    data: NDArray[np.float64],
    method: str = "auto",
    symmetric: Optional[bool] = None,
    condition_limit: Optional[float] = None,
) -> list[Factorization]: ...
def solve_batch(
    factors: list[Factorization], b: NDArray[np.float64], transpose: bool = False
) -> NDArray[np.float64]: ...
def grad_values_batch(
    factors: list[Factorization], adjoint: NDArray[np.float64], x: NDArray[np.float64]
) -> NDArray[np.float64]: ...
