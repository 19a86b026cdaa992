"""Types of ``sparsegrad_rs.jax``. Docstrings are in the module."""
from typing import Optional

import jax

from . import Method, Precision

__all__ = ["spsolve", "logdet", "KEEP", "KEEP_BYTES"]

KEEP: int
KEEP_BYTES: int

def spsolve(
    data: jax.typing.ArrayLike,
    indices: jax.typing.ArrayLike,
    indptr: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
    precision: Precision = "double",
) -> jax.Array: ...
def logdet(
    data: jax.typing.ArrayLike,
    indices: jax.typing.ArrayLike,
    indptr: jax.typing.ArrayLike,
    method: Method = "auto",
    symmetric: Optional[bool] = None,
) -> jax.Array: ...
