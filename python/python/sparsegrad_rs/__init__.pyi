"""Types of ``sparsegrad_rs`` (the SciPy / NumPy API). Docstrings are in the modules."""
from typing import Any, Literal, Optional, Union

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._core import SolveError as SolveError

__version__: str
__all__ = ["factorize", "solve", "logdet", "Factorization", "SolveError", "coo_of",
           "release_memory"]

#: The ``method=`` values.
Method = Literal["auto", "cholesky", "ldlt", "lu"]
Precision = Literal["double", "mixed", "single", "auto"]
SparseMatrix = Union[scipy.sparse.spmatrix, scipy.sparse.sparray]

class Factorization:
    n: int
    nnz: int
    def __init__(self, core: _core.Factorization, nnz: int) -> None: ...
    def solve(self, B: ArrayLike) -> NDArray[np.float64]: ...
    def solve_transpose(self, B: ArrayLike) -> NDArray[np.float64]: ...
    def grad_values(self, adjoint: ArrayLike, X: ArrayLike) -> NDArray[np.float64]: ...
    def logdet(self) -> tuple[float, float]: ...
    def logdet_grad(self) -> NDArray[np.float64]: ...
    def diag_inverse(self) -> NDArray[np.float64]: ...
    def sample(self, z: ArrayLike) -> NDArray[np.float64]: ...
    @property
    def info(self) -> dict[str, Any]: ...

def coo_of(
    A: SparseMatrix,
) -> tuple[int, NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]: ...
def factorize(
    A: SparseMatrix,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    condition_limit: Optional[float] = None,
    precision: Precision = "double",
) -> Factorization: ...
def solve(
    A: SparseMatrix,
    B: ArrayLike,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    condition_limit: Optional[float] = None,
    precision: Precision = "double",
) -> NDArray[np.float64]: ...
def logdet(
    A: SparseMatrix, method: Method = "auto", symmetric: Optional[bool] = None
) -> tuple[float, NDArray[np.float64]]: ...
def release_memory() -> int: ...
