"""Handing the heap's free memory back to the system after a model swap, a backlog or a round.

A swap frees the old model (its LightGBM booster, its compiled copy) and the work of loading the
new one (parsing the model text, validating, LLVM's linking): tens of MB on models of ~1,000
trees. glibc's malloc keeps freed memory in its arenas (one per thread that allocates: the
watcher loads models, the compiler thread compiles them) and returns little of it to the system
by itself, so the predictor's RSS grew with every swap though nothing stayed alive: measured on
the soak run's own models (v1 of 344 trees, then four of ~960), ten swaps in process took RSS
from 292 to 342 MB with one booster alive throughout, and ``malloc_trim(0)`` then gave 52 MB
back. Trimming after each swap keeps it near where it started.

A backlog leaves the same kind of free memory: its larger polls and fetches took a predictor
from 387 to 475 MB while it consumed 400,000 waiting requests, and the heap kept it once the
predictor had caught up; trimmed then, 388 MB. So does a training round: in a process doing a
round's work (the soak's newest 200,000 labelled observations and adult.data, the transform, two
LightGBM fits), RSS was 389-417 MB after each of three rounds, and 278-281 MB once trimmed.
Elsewhere than glibc (musl, macOS) there is no ``malloc_trim``: only the garbage collection is
done.

Trimming returns whole free pages only. What it could not return came from glibc's sliding mmap
threshold: a block of 128 KiB or more starts in a mapping of its own, unmapped when freed, but
freeing one raises the threshold to its size (up to 32 MiB), so every later block of that size
is carved from the heap instead, and the heap keeps the pages that small objects around them
still pin. The first model of ~960 trees (its 4.4 MB text, LightGBM's buffers) raised it, and a
``streamfit predictor`` at 1,500 requests/s rose from 297 to 318 MB at that first promotion and
1-3 MB at every one after (325 MB after five); with the threshold held where glibc starts it,
290 -> 296 MB at the first (the larger model) and 299 MB after five. So each service process
holds it there (:func:`map_large_blocks`).
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
