"""The bundle digest: names and bytes of the bundle's own files, nothing else."""

from __future__ import annotations

import shutil

import pytest

from streamfit.models.bundle import BUNDLE_FILES, BundleError, bundle_sha256
from tests.serving.conftest import train_bundle


def test_digest_covers_each_file_name_and_bytes_and_ignores_derived_files(tmp_path):
    bundle = train_bundle(rounds=3, rows=500)
    first, second = tmp_path / "a", tmp_path / "b"
    bundle.save(first)
    shutil.copytree(first, second)
    digest = bundle_sha256(first)
    assert len(digest) == 64 and digest == bundle_sha256(second)  # same files, same digest
    (second / "model.so").write_bytes(b"a compiled cache is not the bundle")
    assert bundle_sha256(second) == digest
    for name in BUNDLE_FILES:  # one byte more in any file changes it
        changed = tmp_path / f"changed-{name}"
        shutil.copytree(first, changed)
        (changed / name).write_bytes((changed / name).read_bytes() + b" ")
        assert bundle_sha256(changed) != digest
    (second / BUNDLE_FILES[0]).unlink()
    with pytest.raises(BundleError, match="cannot hash"):
        bundle_sha256(second)
