"""The round's final fit on a Dask cluster (``--dask tcp://scheduler:8786``), by ``lightgbm.dask``.

A round scatters the matrix it already built for its search, one block per worker
(:func:`scattered_matrix`). A window too large for the trainer is a Dask DataFrame of raw columns
plus ``label`` instead (Parquet files read in partitions, :func:`read_parquet_window`): each
worker turns its partitions into the model's matrix with the round's fitted feature pipeline,
shipped as its JSON state. Either way every categorical column has its integer codes from the
pipeline's one category list (the one serving uses), never from a partition's own values, and
LightGBM is told which columns are categorical. LightGBM's Dask interface has no early stopping,
so the fit runs the fixed number of boosting rounds the search chose. ``to_local()`` brings back
a plain Booster: bundle, registry and serving are the same as after a single-process fit.

A worker lost mid-fit fails the fit at once (the others' LightGBM would wait on its socket until
``time_out``, and Dask's scheduler would wait for a worker that never comes back); so does a fit
running past ``timeout_s``. The caller's round then fails and is retried; nothing half-made is
promoted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..contract import Contract
from ..features import FeaturePipeline

if TYPE_CHECKING:
    import dask.dataframe as dd
    import lightgbm as lgb
    from distributed import Client

_WATCH_S = 0.5  # how often the watchdog looks at the cluster's workers
_SOCKET_TIMEOUT_MIN = 5  # as LightGBM's own Dask tests


class DaskFitError(RuntimeError):
    """The fit on the cluster failed: a worker lost, the timeout passed, or LightGBM's error."""


def connect(address: str, timeout_s: float = 30.0) -> Client:
    """A client of the scheduler at ``address``; a clear error when it does not answer."""
    try:
        from distributed import Client
    except ImportError as exc:  # the optional extra
        raise DaskFitError("--dask needs the dask extra: pip install 'streamfit[dask]'") from exc
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise DaskFitError(f"Dask scheduler {address} unreachable: {exc}") from exc


def partitioned(client: Client, frame: pd.DataFrame, partitions: int) -> dd.DataFrame:
    """An in-memory window cut into ``partitions`` partitions scattered over the workers: each
    worker receives its own rows only (``dd.from_pandas`` would put the whole frame in the task
    graph, and every worker would hold it)."""
    import dask.dataframe as dd

    frame = frame.reset_index(drop=True)
    bounds = np.linspace(0, len(frame), max(1, partitions) + 1).astype(int)
    chunks = [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return dd.from_delayed(client.scatter(chunks), meta=frame.iloc[:0], verify_meta=False)


def scattered_matrix(
    client: Client, features: np.ndarray, labels: np.ndarray, partitions: int
) -> tuple[Any, Any]:
    """A matrix the trainer already built (the round's, transformed for its search) as Dask
    arrays, one block per worker, scattered: floats travel, not the raw columns."""
    import dask.array as da

    bounds = np.linspace(0, len(labels), max(1, partitions) + 1).astype(int)
    spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    blocks = client.scatter([features[a:b] for a, b in spans])
    targets = client.scatter([np.asarray(labels[a:b], dtype=np.float64) for a, b in spans])
    width, kind = features.shape[1], features.dtype
    x = [da.from_delayed(f, (b - a, width), kind) for f, (a, b) in zip(blocks, spans, strict=True)]
    y = [da.from_delayed(t, (b - a,), np.float64) for t, (a, b) in zip(targets, spans, strict=True)]
    return da.concatenate(x), da.concatenate(y)


def read_parquet_window(paths: str | Sequence[str], columns: Sequence[str]) -> dd.DataFrame:
    """A window written as Parquet files (one per time partition, say), read lazily: only
    ``columns`` (the raw feature columns and ``label``) leave the files."""
    import dask.dataframe as dd

    return dd.read_parquet(paths, columns=list(columns))


def _matrix(
    part: pd.DataFrame, state: Mapping[str, Any], contract: str, names: Sequence[str]
) -> pd.DataFrame:
    pipeline = FeaturePipeline.from_dict(state, Contract.from_json(contract))
    return pd.DataFrame(pipeline.transform(part), columns=list(names), index=part.index)


def features_and_labels(window: dd.DataFrame, pipeline: FeaturePipeline) -> tuple[Any, Any]:
    """(X, y) as Dask arrays with known chunk sizes, transformed partition by partition (the
    pipeline travels as its JSON state and its contract's JSON)."""
    names = [f"f{i}" for i in range(len(pipeline.feature_names))]
    meta = pd.DataFrame({n: pd.Series(dtype=np.float64) for n in names})
    contract = pipeline.contract.to_json()
    matrix = window.map_partitions(_matrix, pipeline.to_dict(), contract, names, meta=meta)
    labels = window["label"].astype(np.float64)
    return matrix.to_dask_array(lengths=True), labels.to_dask_array(lengths=True)


def fit(
    client: Client,
    window: dd.DataFrame | tuple[Any, Any],
    pipeline: FeaturePipeline,
    params: Mapping[str, Any],
    rounds: int,
    *,
    timeout_s: float,
) -> lgb.Booster:
    """Train ``rounds`` boosting rounds of ``params`` (full LightGBM parameters) over the
    cluster's workers and return the local Booster; see the module docstring. ``window``: raw
    columns (transformed on the workers by ``pipeline``) or an (X, y) of
    :func:`scattered_matrix`."""
    model = fit_model(client, window, pipeline, params, rounds, timeout_s=timeout_s)
    return model.to_local().booster_


def fit_model(
    client: Client,
    window: dd.DataFrame | tuple[Any, Any],
    pipeline: FeaturePipeline,
    params: Mapping[str, Any],
    rounds: int,
    *,
    timeout_s: float,
) -> Any:
    """As :func:`fit`, returning the Dask estimator itself (its cluster predictions)."""
    from distributed import wait
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    # Dask's helpers (wait, chunk lengths, lightgbm.dask's own waits) look for the current
    # client; ours is not the process-wide default.
    with client.as_current():
        if isinstance(window, tuple):
            features, labels = window
        else:
            features, labels = features_and_labels(window, pipeline)
        features, labels = client.persist([features, labels])
        wait([features, labels], timeout=timeout_s)
    workers = set(client.scheduler_info()["workers"])
    options = dict(params)
    threads = options.pop("num_threads", None)
    # Classifier or regressor: only the wrapper differs; params carry the task's objective.
    kind = DaskLGBMRegressor if options.get("objective") == "regression" else DaskLGBMClassifier
    model = kind(
        client=client,
        n_estimators=int(rounds),
        num_threads=threads,
        # LightGBM's socket timeout, in minutes, per network operation (not the whole fit):
        # what a surviving worker waits for a dead peer before its task gives up.
        time_out=max(1, min(_SOCKET_TIMEOUT_MIN, int(timeout_s // 60))),
        verbose=-1,
        **options,
    )
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            with client.as_current():
                categorical = list(pipeline.categorical_features)
                model.fit(features, labels, categorical_feature=categorical)
        except BaseException as exc:  # reported by the watching thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="dask-fit", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout_s
    while worker.is_alive():
        worker.join(_WATCH_S)
        if not worker.is_alive():
            break
        lost = workers - set(client.scheduler_info()["workers"])
        if lost:
            raise DaskFitError(f"Dask worker(s) lost mid-fit: {', '.join(sorted(lost))}")
        if time.monotonic() > deadline:
            raise DaskFitError(f"the Dask fit did not finish within {timeout_s:.0f} s")
    if "error" in outcome:
        error = outcome["error"]
        lost = workers - set(client.scheduler_info()["workers"])
        why = f"worker(s) lost mid-fit: {', '.join(sorted(lost))}; " if lost else ""
        raise DaskFitError(f"the Dask fit failed ({why}{type(error).__name__}: {error})") from error
    return model


__all__ = [
    "DaskFitError",
    "connect",
    "features_and_labels",
    "fit",
    "fit_model",
    "partitioned",
    "read_parquet_window",
    "scattered_matrix",
]
