"""The model registry (MLflow): where every service finds the champion and fetches its bundle.

Services share no disk: a model reaches a predictor (or the trainer's gate, or the monitor) as a
registered version of ``settings.registered_model`` on the tracking server. The trainer logs the
bundle (``model.txt``, ``pipeline.json``, ``manifest.json``) once, as the ``bundle`` artifact of
the version's pyfunc model, and tags the version with the bundle's SHA-256
(:func:`~streamfit.models.bundle.bundle_sha256`). A reader downloads those files through the
tracking server (MLflow's artifact download: proxied ``mlflow-artifacts:`` URIs of an
``http://`` server and local ``file:`` stores of a SQLite tracking store take the same path) into
a cache directory of its own, verifies the digest, and only then parses anything.

**Versions.** The registry version is the model's version everywhere: predictions carry it, the
predictors log it, ``models`` events and ``promote``/``rollback`` use it, and the trainer stores
its own copy under it. A bundle learns its version when it is registered, after its files were
logged, so the ``manifest.json`` inside the registered artifacts has no ``version``:
:meth:`ModelRegistry.load` sets it from the registry (the one place the mapping happens).

**Champion.** The alias ``@champion`` names the serving model. Each promotion also tags the
version ``champion_since`` (and a rollback tags the version it leaves ``rolled_back``), so the
history a rollback walks back lives in the registry too.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bundle import BUNDLE_FILES, BundleError, ModelBundle, bundle_sha256

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("streamfit.models.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
SHADOW = "shadow"  # the challenger predictors score beside the champion (shadow mode)
SHA256_TAG = "sha256"
CHAMPION_SINCE_TAG = "champion_since"
ROLLED_BACK_TAG = "rolled_back"
BUNDLE_ARTIFACT = "bundle"  # the pyfunc artifact that holds the bundle's files


class IntegrityError(BundleError):
    """A fetched bundle's files do not hash to the digest recorded at registration."""


@dataclass(frozen=True)
class RegisteredBundle:
    """A registered version as readers see it: what a ``models`` event carries."""

    version: int
    model_uri: str  # models:/<name>/<version>
    sha256: str | None
    run_id: str | None = None


class ModelRegistry:
    """One registered model on one tracking server. No network call until first used."""

    def __init__(self, tracking_uri: str, name: str) -> None:
        if not name:
            raise ValueError("registered model name must not be empty")
        self.tracking_uri = tracking_uri
        self.name = name
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        return cls(settings.mlflow_uri, settings.registered_model)

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient  # seconds to import: only when used

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- reading --------------------------------------------------------------------------------
    def get(self, version: int) -> RegisteredBundle:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            raise BundleError(f"no version {version} of {self.name!r} in the registry") from exc
        return self._entry(found)

    def champion(self) -> RegisteredBundle | None:
        """The version ``@champion`` points at, or None when there is none yet."""
        return self.aliased(CHAMPION)

    def shadow(self) -> RegisteredBundle | None:
        """The challenger being shadowed (alias ``@shadow``), or None."""
        return self.aliased(SHADOW)

    def aliased(self, alias: str) -> RegisteredBundle | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None
        return self._entry(found)

    def _entry(self, found: Any) -> RegisteredBundle:
        version = int(found.version)
        return RegisteredBundle(
            version=version,
            model_uri=f"models:/{self.name}/{version}",
            sha256=(found.tags or {}).get(SHA256_TAG),
            run_id=found.run_id,
        )

    def champion_history(self) -> list[tuple[float, int, bool]]:
        """(promoted at, version, rolled back) of every version ever champion, oldest first."""
        history = []
        for found in self.client.search_model_versions(f"name='{self.name}'"):
            tags = found.tags or {}
            if CHAMPION_SINCE_TAG in tags:
                rolled_back = tags.get(ROLLED_BACK_TAG) == "true"
                history.append((float(tags[CHAMPION_SINCE_TAG]), int(found.version), rolled_back))
        return sorted(history)

    # -- writing --------------------------------------------------------------------------------
    def set_alias(self, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):  # already gone
            self.client.delete_registered_model_alias(self.name, alias)

    def make_champion(self, version: int, *, rollback: bool = False) -> None:
        """Point ``@champion`` at ``version`` and record it in the history tags."""
        current = self.champion()
        if rollback and current is not None and current.version != version:
            self.client.set_model_version_tag(
                self.name, str(current.version), ROLLED_BACK_TAG, "true"
            )
        self.client.set_model_version_tag(
            self.name, str(version), CHAMPION_SINCE_TAG, repr(time.time())
        )
        self.client.delete_model_version_tag(self.name, str(version), ROLLED_BACK_TAG)
        self.set_alias(CHAMPION, version)

    # -- fetching -------------------------------------------------------------------------------
    def fetch(self, entry: RegisteredBundle, cache: Path) -> Path:
        """The bundle's files in ``cache/v<version>``, downloaded if needed, digest verified.

        A cached copy is re-hashed before use; one that no longer matches is downloaded again.
        Raises IntegrityError when the downloaded files do not match, BundleError when there is
        no digest to check against or the download fails.
        """
        if not entry.sha256:
            raise BundleError(f"v{entry.version} has no {SHA256_TAG} recorded: not trusted")
        target = cache / f"v{entry.version:06d}"
        if _matches(target, entry.sha256):
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
        try:
            downloaded = self._download(entry, staging)
            digest = bundle_sha256(downloaded)
            if digest != entry.sha256:
                raise IntegrityError(
                    f"v{entry.version} bundle hashes to {digest[:12]}…, registered as "
                    f"{entry.sha256[:12]}…: its files changed after registration"
                )
            # Several predictors may share a cache directory: whoever renames first wins, and
            # a copy in place is never deleted while it matches (another may be loading it).
            for _ in range(3):
                if _matches(target, entry.sha256):
                    break
                try:
                    downloaded.rename(target)
                except OSError as exc:  # a directory is there and does not match: set it aside
                    log.warning("cached bundle v%s is not the registered one: replacing it", entry)
                    error = exc
                    with contextlib.suppress(OSError):
                        target.rename(staging / "stale")
            else:
                if not _matches(target, entry.sha256):
                    raise BundleError(f"cannot place bundle v{entry.version} in {target}: {error}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _download(self, entry: RegisteredBundle, into: Path) -> Path:
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        try:
            root = self.client.get_model_version_download_uri(self.name, str(entry.version))
            for name in BUNDLE_FILES:  # the bundle's own files only: nothing else is trusted
                download_artifacts(
                    artifact_uri=f"{root.rstrip('/')}/artifacts/{BUNDLE_ARTIFACT}/{name}",
                    dst_path=str(into / BUNDLE_ARTIFACT),
                    tracking_uri=self.tracking_uri,
                )
        except (MlflowException, OSError) as exc:
            raise BundleError(f"cannot download bundle v{entry.version}: {exc}") from exc
        return into / BUNDLE_ARTIFACT

    def load(self, entry: RegisteredBundle, cache: Path) -> tuple[ModelBundle, Path]:
        """Fetch, verify and parse the bundle; its version is the registry's (see the module
        docstring). Returns the bundle and its cache directory."""
        directory = self.fetch(entry, cache)
        bundle = ModelBundle.load(directory)
        bundle.manifest.update(version=entry.version, sha256=entry.sha256)
        return bundle, directory


def _matches(directory: Path, sha256: str) -> bool:
    """Whether ``directory`` holds a bundle with digest ``sha256`` (False when there is none)."""
    if not directory.is_dir():
        return False
    try:
        return bundle_sha256(directory) == sha256
    except BundleError:
        return False


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "SHADOW",
    "IntegrityError",
    "ModelRegistry",
    "RegisteredBundle",
]
