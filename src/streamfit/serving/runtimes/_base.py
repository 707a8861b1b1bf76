"""The model runtime family: how a bundle's LightGBM model is turned into a faster predictor.

A runtime builds a library from ``model.txt`` (in a child process: see
:mod:`streamfit.serving._build`) and loads it back as a function from a float64 feature matrix
to probabilities. Everything around that (the cache beside the bundle, its sidecar key and
digest, the check against LightGBM before a swap, the time bound) is the runtime-independent
path of :mod:`streamfit.serving._compiled`.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import struct
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
_NOBITS = 8  # a section (.bss) that takes no room in the file


class ModelRuntime(ABC):
    """One way to run a LightGBM model; subclasses are private (``_tl2cgen``, ``_lleaves``)."""

    name: ClassVar[str]
    library_file: ClassVar[str]  # the derived cache's file name inside the bundle's directory

    def missing(self) -> str | None:
        """Why this runtime cannot run on this machine (not installed, no compiler...), or
        None when it can. Checked before any build is started."""
        return None

    def refuses(self, task: str) -> str | None:
        """Why this runtime does not take models of ``task`` (binary, multiclass,
        regression), or None when it does."""
        return None

    def versions(self) -> dict[str, str]:
        """The tool versions a library depends on: part of its cache key."""
        return {}

    @abstractmethod
    def build(self, model_file: Path, library: Path, threads: int) -> None:
        """Build ``library`` from ``model_file`` (runs in the build's child process)."""

    @abstractmethod
    def load(self, library: Path, model_file: Path) -> Predict:
        """Load a built library: a function from a float64 matrix (rows x features) to what
        LightGBM's ``predict`` gives (a value per row; rows x classes for a multiclass model),
        single-threaded."""


def compiler() -> str | None:
    """The C compiler the runtimes build or link with, or None."""
    return shutil.which(os.environ.get("CC", "gcc"))


class SharedLibrary:
    """A ``dlopen``ed library, ``dlclose``d as soon as this object is gone.

    ctypes' own ``CDLL`` is never closed: its function objects sit in reference cycles, so a
    model's library stayed mapped until a full garbage collection at best, and loading a
    rebuilt library at the same path meanwhile gave back the old one (``dlopen`` matches loaded
    libraries by name). Here the functions are made from bare addresses and keep nothing alive:
    whoever calls one must hold this object for as long as it does."""

    def __init__(self, path: Path) -> None:
        self._handle = _ctypes.dlopen(str(path), os.RTLD_NOW | os.RTLD_LOCAL)
        weakref.finalize(self, _ctypes.dlclose, self._handle).atexit = False

    def function(self, name: str, prototype: type[ctypes._CFuncPtr]) -> ctypes._CFuncPtr:
        return prototype(_ctypes.dlsym(self._handle, name))


def check_elf_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is a 64-bit ELF file whose segments and sections all
    lie inside it. The loaders do not fail cleanly on a damaged file: ``dlopen`` of a truncated
    shared library dies of SIGBUS, and a predictor
    must log and keep LightGBM instead. (The sidecar's digest already keeps out a damaged cache;
    this is for a sidecar that vouches for one anyway.)"""
    data = path.read_bytes()
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] not in (1, 2):
        raise ValueError(f"{path.name} is not a 64-bit ELF file")
    order = "<" if data[5] == 1 else ">"
    (segment_table,) = struct.unpack_from(order + "Q", data, 0x20)
    (section_table,) = struct.unpack_from(order + "Q", data, 0x28)
    segment_size, segments, section_size, sections = struct.unpack_from(order + "HHHH", data, 0x36)
    for table, size, count, minimum in (
        (segment_table, segment_size, segments, 56),
        (section_table, section_size, sections, 64),
    ):
        if count and (size < minimum or table + size * count > len(data)):
            raise ValueError(f"{path.name} is truncated: a header table ends past the file")
    for index in range(segments):
        header = segment_table + index * segment_size
        offset, _, _, size = struct.unpack_from(order + "QQQQ", data, header + 8)
        if offset + size > len(data):
            raise ValueError(f"{path.name} is truncated: segment {index} ends past the file")
    for index in range(sections):
        header = section_table + index * section_size
        (kind,) = struct.unpack_from(order + "I", data, header + 4)
        offset, size = struct.unpack_from(order + "QQ", data, header + 0x18)
        if kind != _NOBITS and offset + size > len(data):
            raise ValueError(f"{path.name} is truncated: section {index} ends past the file")
