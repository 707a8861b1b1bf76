"""Model bundles and the versioned store both the trainer and the predictors read.

A bundle is a directory: ``model.txt`` (LightGBM's own text format), ``contract.json`` (the
feature contract: what the model reads and predicts), ``pipeline.json`` (the fitted feature
pipeline) and ``manifest.json`` (version, created, metrics, data rows...).
No pickle anywhere: a service only ever parses text it can validate.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..contract import Contract, ContractError, TaskRules, task_of
from ..features import FeaturePipeline

if TYPE_CHECKING:
    import lightgbm as lgb

MODEL_FILE = "model.txt"
PIPELINE_FILE = "pipeline.json"
CONTRACT_FILE = "contract.json"
MANIFEST_FILE = "manifest.json"
CHAMPION_FILE = "champion.json"
# The bundle itself: what its digest covers (a compiled library beside them is a derived cache).
BUNDLE_FILES = (CONTRACT_FILE, MANIFEST_FILE, MODEL_FILE, PIPELINE_FILE)


class BundleError(Exception):
    """A bundle is missing, corrupt, or fails validation."""


@dataclass
class ModelBundle:
    booster: lgb.Booster
    pipeline: FeaturePipeline
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return int(self.manifest.get("version", 0))

    @property
    def contract(self) -> Contract:
        return self.pipeline.contract

    @functools.cached_property
    def rules(self) -> TaskRules:
        return task_of(self.pipeline.contract)

    def predict_matrix(self, features: np.ndarray) -> np.ndarray:
        """The model's outputs for an already transformed matrix: binary P(positive class),
        multiclass one probability per class (rows x classes), regression the value."""
        return self.booster.predict(features, num_threads=1)

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_matrix(self.pipeline.transform_records(records))

    def predict_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Outputs for a batch given as raw columns."""
        return self.predict_matrix(self.pipeline.transform(columns))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        (directory / CONTRACT_FILE).write_text(self.contract.to_json())
        (directory / PIPELINE_FILE).write_text(json.dumps(self.pipeline.to_dict()))
        (directory / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        # Imported here, not with the module: LightGBM brings scikit-learn and SciPy, seconds
        # of every start of a service that only catches BundleError (the recorder).
        import lightgbm as lgb

        if not (directory / CONTRACT_FILE).exists() and (directory / MODEL_FILE).exists():
            raise BundleError(f"bundle {directory} predates feature contracts: retrain it")
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            contract = Contract.load(directory / CONTRACT_FILE)
            pipeline = FeaturePipeline.from_dict(
                json.loads((directory / PIPELINE_FILE).read_text()), contract
            )
            booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            ContractError,
            lgb.basic.LightGBMError,
        ) as exc:
            raise BundleError(f"cannot load bundle {directory}: {exc}") from exc
        return cls(booster, pipeline, manifest)

    def validate(self) -> None:
        """Raise BundleError unless the model fits the pipeline and predicts a sane canary."""
        expected = len(self.pipeline.feature_names)
        if self.booster.num_feature() != expected:
            raise BundleError(
                f"model expects {self.booster.num_feature()} features, pipeline gives {expected}"
            )
        problem = self.rules.check_output(self.predict_records([canary_row(self.contract)]))
        if problem:
            raise BundleError(f"canary prediction: {problem}")


def canary_row(contract: Contract) -> dict[str, Any]:
    """A plausible request for ``contract``: each number mid-range, each category its first
    level, each date a fixed day; used to check that a freshly loaded bundle predicts at all."""
    row: dict[str, Any] = {}
    for spec in contract.columns:
        if spec.kind == "numeric":
            low, high = spec.minimum or 0.0, spec.maximum or 0.0
            row[spec.name] = (low + high) / 2
        elif spec.kind == "categorical":
            row[spec.name] = spec.levels[0] if spec.levels else None
        else:
            row[spec.name] = "2024-01-15T12:00:00"
    return row


class ModelStore:
    """Versioned bundles under one directory: ``v000001/``, ``v000002/``... and a champion pointer.

    Writes are atomic (build in a temporary directory, then rename), so a reader never sees a
    half-written bundle. ``keep`` bounds how many versions stay on disk; the champion is never
    pruned.
    """

    def __init__(self, root: Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.root = Path(root)
        self.keep = keep

    def path(self, version: int) -> Path:
        return self.root / f"v{version:06d}"

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in self.root.glob("v[0-9]*") if p.is_dir())

    def save(self, bundle: ModelBundle, version: int | None = None) -> int:
        """Store ``bundle`` as ``version`` (its registry version), or else as the next local
        version; return that version. A stale copy under a given ``version`` is replaced."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        if version is not None:
            bundle.manifest["version"] = version
            bundle.save(staging)
            shutil.rmtree(self.path(version), ignore_errors=True)
            staging.rename(self.path(version))
            self.prune()
            return version
        while True:
            version = max(self.versions(), default=0) + 1
            bundle.manifest.update(
                version=version,
                created=bundle.manifest.get("created")
                or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            bundle.save(staging)
            try:
                staging.rename(self.path(version))  # fails if another writer took the number
                break
            except OSError:
                continue
        self.prune()
        return version

    def load(self, version: int) -> ModelBundle:
        if not self.path(version).is_dir():
            raise BundleError(
                f"no bundle version {version} in {self.root} (on disk: {self.versions()})"
            )
        bundle = ModelBundle.load(self.path(version))
        bundle.manifest.setdefault("version", version)  # a bundle fetched from the registry
        return bundle

    def champion(self) -> int | None:
        return self._pointer("version")

    def previous_champion(self) -> int | None:
        """The champion before the current one: kept on disk so a rollback always has a target."""
        return self._pointer("previous")

    def _pointer(self, field: str) -> int | None:
        """A version named in the champion pointer file, or None."""
        try:
            value = json.loads((self.root / CHAMPION_FILE).read_text()).get(field)
            return int(value) if value is not None else None
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def set_champion(self, version: int, *, rollback: bool = False) -> None:
        """Point at ``version``; the champion it replaces is remembered (unless rolled back)."""
        if not self.path(version).is_dir():
            raise BundleError(f"no bundle version {version} in {self.root}")
        previous = None if rollback else self.champion()
        if previous == version:
            previous = self.previous_champion()
        pointer = {"version": version, "previous": previous, "since": time.time()}
        atomic_write_text(self.root / CHAMPION_FILE, json.dumps(pointer))
        self.prune()

    def prune(self) -> None:
        protected = {self.champion(), self.previous_champion()}
        old = [v for v in self.versions()[: -self.keep] if v not in protected]
        for version in old:
            shutil.rmtree(self.path(version), ignore_errors=True)


def bundle_sha256(directory: Path) -> str:
    """SHA-256 of a bundle: each of :data:`BUNDLE_FILES`, in that order, as its name, its length
    and its bytes. The same files give the same digest on any machine; raises BundleError when
    one is missing."""
    digest = hashlib.sha256()
    for name in BUNDLE_FILES:
        try:
            data = (Path(directory) / name).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot hash bundle {directory}: {exc}") from exc
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` so a reader sees the old content or the new, never a partial file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
