"""A model swap (or a backlog, or a round) hands the memory it freed back to the system
(glibc keeps it otherwise)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# Both children: their RSS, and glibc's malloc and free as they are (not Python's allocator).
_PRELUDE = """
import ctypes, sys
from pathlib import Path
from streamfit.ops.heap import map_large_blocks, release_freed_memory

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
"""


def _child(code: str, *args: str) -> str:
    command = [sys.executable, "-c", _PRELUDE + code, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True).stdout


# In a process of its own (RSS is per process): 200 MB in 64 KB blocks (below glibc's mmap
# threshold: they come from the heap, as a model's many small allocations do), all freed but
# the last, which keeps the heap's top in use so free() alone cannot shrink it.
_CHILD = """
blocks = []
for _ in range(3200):
    block = libc.malloc(64 * 1024)
    ctypes.memset(block, 1, 64 * 1024)  # touched: resident
    blocks.append(block)
for block in blocks[:-1]:
    libc.free(block)
freed = rss_mb()
released = release_freed_memory()
print(released, round(freed), round(rss_mb()))
"""


def test_memory_freed_by_a_swap_goes_back_to_the_system():
    out = _child(_CHILD).split()
    released, freed, after = out[0] == "True", int(out[1]), int(out[2])
    assert released  # glibc, as on every Linux image streamfit ships on
    assert freed - after > 150, (freed, after)  # of the 200 MB freed but kept by malloc


# A freed 4 MB block raises glibc's mmap threshold; then 60 blocks of 1 MB, each followed by a
# smaller block that stays (as a model's small objects stay beside its large buffers), are freed.
_LARGE = """
if sys.argv[1] == "mapped":
    assert map_large_blocks()
libc.free(libc.malloc(4 << 20))
large, small = [], []
for _ in range(60):
    large.append(libc.malloc(1 << 20))
    ctypes.memset(large[-1], 1, 1 << 20)
    small.append(libc.malloc(100 << 10))  # too large for the holes below: after it
before = rss_mb()
for block in large:
    libc.free(block)
print(round(before - rss_mb()))
"""


def test_large_blocks_freed_go_back_to_the_system_at_once_when_mapped():
    assert int(_child(_LARGE, "mapped")) > 50  # each had its own mapping: unmapped when freed
    assert int(_child(_LARGE, "default")) < 10  # glibc's sliding threshold put them in the heap
