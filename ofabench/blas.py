"""Keep BLAS to one thread around the tiny matrix products of a search.

Predicting a population is a few (N x 400) @ (400 x 400) products with N around 50. OpenBLAS
splits such products across threads, and on a machine whose cores are busy with other work
the second thread costs far more than it gives (10x slower measured here). When
``threadpoolctl`` is importable, :func:`single_threaded_blas` limits BLAS to one thread for the
duration of a block and restores it after; otherwise it does nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("ofabench")

_state = threading.local()


@functools.lru_cache(maxsize=1)
def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the loaded BLAS libraries (empty if unavailable)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        logger.debug("threadpoolctl is not installed: BLAS keeps its default thread count")
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with BLAS limited to one thread (re-entrant; restores the old counts)."""
    if getattr(_state, "depth", 0):
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    libraries = _blas_libraries()
    previous = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    _state.depth = 1
    try:
        yield
    finally:
        _state.depth = 0
        for lib, n in zip(libraries, previous):
            lib.set_num_threads(n)
