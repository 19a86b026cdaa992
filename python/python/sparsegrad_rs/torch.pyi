"""Types of ``sparsegrad_rs.torch``. Docstrings are in the module."""
from typing import Any, Optional, Union

import numpy as np
import torch
from numpy.typing import NDArray

from . import Method, Precision

__all__ = ["solve", "solve_coo", "factorize", "logdet", "logdet_coo", "Factorization",
           "BatchCooSolve"]

KEEP: int

class BatchCooSolve(torch.autograd.Function): ...

class Factorization:
    n: int
    def __init__(
        self,
        A: torch.Tensor,
        method: Method = "auto",
        symmetric: Optional[bool] = None,
        precision: Precision = "double",
    ) -> None: ...
    def solve(self, B: torch.Tensor) -> torch.Tensor: ...
    def solve_transpose(self, B: torch.Tensor) -> torch.Tensor: ...
    @property
    def info(self) -> dict[str, Any]: ...

def factorize(
    A: torch.Tensor,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    precision: Precision = "double",
) -> Factorization: ...
def solve(
    A: torch.Tensor,
    B: torch.Tensor,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    precision: Precision = "double",
) -> torch.Tensor: ...
def solve_coo(
    indices: Union[torch.Tensor, NDArray[np.integer[Any]]],
    values: torch.Tensor,
    B: torch.Tensor,
    n: int,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    precision: Precision = "double",
) -> torch.Tensor: ...
def logdet(
    A: torch.Tensor, method: Method = "auto", symmetric: Optional[bool] = None
) -> torch.Tensor: ...
def logdet_coo(
    indices: Union[torch.Tensor, NDArray[np.integer[Any]]],
    values: torch.Tensor,
    n: int,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
) -> torch.Tensor: ...
