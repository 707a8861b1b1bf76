"""Handing the heap's free memory back to the system after a model swap, a backlog or a round.

A swap frees the old model and the work of loading the new one; a backlog, its larger polls and
fetches; a round, its training window and fits. glibc's malloc keeps freed memory in its arenas
(one per allocating thread) and returns little of it by itself, so RSS grew though nothing stayed
alive: ``malloc_trim(0)`` after each of those hands it back. Elsewhere than glibc (musl, macOS)
there is no ``malloc_trim``: only the garbage collection is done.

Trimming returns whole free pages only. glibc's sliding mmap threshold keeps more: freeing a
block of 128 KiB or more raises the threshold to its size, so later blocks of that size come
from the heap, where small objects beside them pin their pages. Each service process holds the
threshold where glibc starts it (:func:`map_large_blocks`). Why, and the soak runs' figures:
docs/explanation/memory.md and docs/benchmarks/soak.md.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable

_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
LARGE_BLOCK = 128 * 1024  # glibc's own starting threshold


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Give every allocation of ``threshold`` bytes or more a mapping of its own, handed back
    to the system when it is freed, for the rest of the process; False where the C library has
    no such setting. Process-wide: only a service that owns its process calls it (the CLI)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Collect the garbage cycles a swap left, then return the free memory of every malloc
    arena to the system; False where the C library cannot return it.

    The collection first: ``streamfit predictor`` collects its old generation rarely (see
    ``tune_garbage_collector``: tens of minutes apart at a steady stream), so the cycles a model
    load leaves behind (MLflow's, pandas') would pile up, about 2 MB a swap, between two full
    collections. Once per swap, off the hot path, it walks only what was created since the
    start-up objects were frozen."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
