"""MLflow 3 tracker: parent run per round, light child run per trial, one model per round.

Decisions:

* Child runs go through ``MlflowClient`` (create, one ``log_batch``, terminate): three store
  calls per trial, no model, no artifacts. Thousands of fat runs make the UI and ``search_runs``
  slow on SQLite.
* Autologging is never enabled (LightGBM autolog would log a model per ``lgb.cv`` call).
* A fresh SQLite store creates an empty ``Default`` experiment (id 0) that the UI lists first.
  Ours is created with ``artifact_location`` under the data directory, and ``Default`` is
  soft-deleted *only if it holds no runs*, so nothing of anyone's is hidden.
* The model is logged once, as MLflow "models from code" (``_pyfunc_model.py``) with the bundle
  directory as its artifact: nothing is pickled, and ``predict`` takes raw Adult columns.
* The experiment is tagged ``mlflow.experimentKind = custom_model_development``: without a kind,
  MLflow 3's UI opens an experiment on its GenAI overview ("Traces 0"), not on the runs.
* Each round's parent run carries a description (``mlflow.note.content``, the run page's
  "Description"): what triggered the round and what the gate decided.
* The model is registered through ``MlflowClient``, not ``mlflow.register_model``, which prints
  "Successfully registered model" and "Created version" lines on the service's stderr.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import (
    MLFLOW_MODEL_VERSIONS,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
)

from ..contract import ColumnSpec, Contract
from ..models.bundle import BUNDLE_FILES, CONTRACT_FILE, bundle_sha256
from ..models.registry import BUNDLE_ARTIFACT, SHA256_TAG, ModelRegistry
from ._base import Tracker

if TYPE_CHECKING:
    import pandas as pd

MODEL_CODE = Path(__file__).resolve().parents[1] / "training" / "_pyfunc_model.py"
_MAX_PARAM_LENGTH = 6000
# The experiment kind MLflow 3's UI reads to open an experiment on its training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class MlflowTracker(Tracker):
    def __init__(
        self,
        uri: str,
        *,
        experiment: str = "streamfit",
        artifact_location: str | None = None,
        registered_model: str = "streamfit-model",
    ) -> None:
        if not experiment:
            raise ValueError("experiment name must not be empty")
        self.uri = uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.registered_model = registered_model
        # The fluent API (log_model, register_model) reads the process-wide URI.
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None
        self._registry: ModelRegistry | None = None
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._ensure_experiment()
        return self._experiment_id

    def _ensure_experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            except MlflowException:  # another process created it first
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment_id)
        if found is None or found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self._hide_empty_default(experiment_id)
        return experiment_id

    def _hide_empty_default(self, ours: str) -> None:
        try:
            default = self.client.get_experiment("0")
        except MlflowException:
            return
        if (
            default.name == "Default"
            and ours != "0"
            and default.lifecycle_stage == "active"
            and not self.client.search_runs(["0"], max_results=1)
        ):
            self.client.delete_experiment("0")

    # -- runs -----------------------------------------------------------------------------------
    def start_round(self, name: str, tags: Mapping[str, str]) -> str | None:
        run = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=name,
            tags={k: str(v) for k, v in tags.items()},
        )
        self.run_id = run.info.run_id
        return self.run_id

    def join_round(self, run_id: str | None) -> None:
        self.run_id = run_id  # trials become its children; the leader ends it

    def log_trial(
        self, number: int, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        if self.run_id is None:
            raise RuntimeError("log_trial called outside a round")
        now = int(time.time() * 1000)
        child = self.client.create_run(
            self.experiment_id,
            start_time=now,
            tags={MLFLOW_PARENT_RUN_ID: self.run_id, MLFLOW_RUN_NAME: f"trial-{number:03d}"},
        )
        self.client.log_batch(
            child.info.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, _text(v)) for k, v in params.items()],
        )
        self.client.set_terminated(child.info.run_id)

    def log_round(
        self,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if self.run_id is None:
            raise RuntimeError("log_round called outside a round")
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, _text(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def describe_round(self, text: str) -> None:
        if self.run_id is None:
            raise RuntimeError("describe_round called outside a round")
        self.client.set_tag(self.run_id, MLFLOW_RUN_NOTE, text)

    def log_artifacts(self, directory: Path, path: str | None = None) -> None:
        if self.run_id is None:
            raise RuntimeError("log_artifacts called outside a round")
        self.client.log_artifacts(self.run_id, str(directory), path)

    def end_round(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            mlflow.end_run(status)
            self.run_id = None

    # -- model and registry ---------------------------------------------------------------------
    def log_model(
        self, bundle_dir: Path, input_example: pd.DataFrame, output_example: Any
    ) -> int | None:
        import lightgbm

        from .. import __version__

        contract = Contract.load(bundle_dir / CONTRACT_FILE)
        signature = contract_signature(contract, output_example)
        with tempfile.TemporaryDirectory(prefix="streamfit-register-") as scratch:
            # The bundle's own files, under the artifact name readers fetch (registry.py); its
            # digest, taken from the very files logged, is the version's sha256 tag.
            staged = Path(scratch) / BUNDLE_ARTIFACT
            staged.mkdir()
            for name in BUNDLE_FILES:
                shutil.copyfile(bundle_dir / name, staged / name)
            digest = bundle_sha256(staged)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={BUNDLE_ARTIFACT: str(staged)},
                signature=signature,
                input_example=input_example,
                # Listed rather than inferred: inference loads the model in a subprocess,
                # seconds per round. streamfit itself is a local package: serve with
                # env_manager="local".
                pip_requirements=[
                    f"lightgbm=={lightgbm.__version__}",
                    "numpy",
                    "pandas",
                    "orjson",
                    f"streamfit=={__version__}",
                ],
            )
        return self._register(info.model_uri, info.model_id, digest)

    def _register(self, model_uri: str, model_id: str, digest: str) -> int:
        """What ``mlflow.register_model`` does for a logged model, without its prints."""
        try:
            self.client.create_registered_model(self.registered_model)
        except MlflowException as exc:
            if exc.error_code not in (
                ErrorCode.Name(RESOURCE_ALREADY_EXISTS),
                ErrorCode.Name(ALREADY_EXISTS),
            ):
                raise
        version = self.client.create_model_version(
            self.registered_model,
            model_uri,
            run_id=self.run_id,
            tags={SHA256_TAG: digest},
            model_id=model_id,
        )
        # The logged model's page links to its registered versions through this tag.
        model = self.client.get_logged_model(model_id)
        linked = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
        linked.append({"name": self.registered_model, "version": version.version})
        self.client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})
        return int(version.version)

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry(self.uri, self.registered_model)
        return self._registry

    def set_alias(self, alias: str, registry_version: int) -> None:
        self.client.set_registered_model_alias(self.registered_model, alias, str(registry_version))

    # -- the served model's run (monitor) -------------------------------------------------------
    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):  # log_batch takes at most 1000 metrics
            self.client.log_batch(run_id, metrics=batch[start : start + 1000])

    def log_run_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)


def contract_signature(contract: Contract, output_example: Any) -> Any:
    """The MLflow signature of a contract's model: numbers as double, categories as string
    (long or boolean for levels of those types), dates as ISO strings, a column optional where
    the contract lets a request leave it out. Generated, never inferred: a signature has no
    category type, and inference marks columns optional only when the sample has a gap.

    A numeric column of whole numbers takes any type: pandas reads it as int64, or as float64
    once a value is missing, and MLflow refuses int64 for a double column (the pipeline
    converts either)."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

    def value_type(spec: ColumnSpec) -> Any:
        if spec.kind == "numeric":
            return AnyType() if spec.type == "integer" else DataType.double
        return {"integer": DataType.long, "boolean": DataType.boolean}.get(
            spec.type, DataType.string
        )

    columns = [
        ColSpec(value_type(spec), spec.name, required=spec.required) for spec in contract.columns
    ]
    outputs = infer_signature(None, output_example).outputs
    return ModelSignature(inputs=Schema(columns), outputs=outputs)


def _text(value: Any) -> str:
    return str(value)[:_MAX_PARAM_LENGTH]
