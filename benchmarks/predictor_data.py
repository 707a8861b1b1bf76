"""``benchmarks/predictor.py --data`` / ``--suite your-data``: the predictor's end-to-end
throughput against the no-op confluent-kafka loop on any data set (issue 22).

Per data set: an initial model (``streamfit init --data ... --max-evals 2``, or
``--init-max-evals``: the search budget's effect on the model's size is its cost), requests made
from its test rows (``streamfit.datasets.table_requests``, label removed), then in each round,
for every data set one after the other on the same broker: the no-op loop, then the predictor
at-least-once, over the same waiting requests. ``e2e_vs_noop`` is the median over rounds of the
ratio taken within a round. ``native_batches``: the same requests, in the predictor's
micro-batches, decoded by the served model's pipeline in this process: how many batches the
native (C) decoder took, the rest fell back to msgspec (a contract with a date does, by design).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_data import BenchData, flights_sets, penguins_set
from predictor import (
    _machine,
    _request_values,
    _uri,
    ensure_broker,
    part_e2e,
    train_model,
    warm_model_cache,
)

from streamfit import messages
from streamfit.config import Settings
from streamfit.datasets import load_dataset, table_requests
from streamfit.models.registry import ModelRegistry

# The runs of a round per data set: name -> the no-op loop's acknowledgement (as in E2E_RUNS:
# 1 = per predictor micro-batch), None for the predictor itself.
RUNS = {"noop": 1, "at-least-once": None}


def suite(directory: Path, quick: bool) -> list[BenchData]:
    """Issue 22's data sets: flights (a 50,000-row sample with ``--quick``) as regression, with
    and without its datetime column, and as binary; penguins as multiclass."""
    return [*flights_sets(directory, 50_000 if quick else None, with_time=True), penguins_set()]


def records_of(template: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` request data from the template's data set's test rows, without the label."""
    dataset = load_dataset(Settings(data_dir=template))
    label = dataset.contract.label
    rows = table_requests(dataset, count, seed=seed)
    return [{k: v for k, v in row.items() if k != label} for row in rows]


def native_coverage(template: Path, cache: Path, records: list[dict[str, Any]], count: int) -> dict:
    """How many of the predictor's micro-batches of these requests the served model's native
    decoder takes (the rest go to msgspec)."""
    settings = Settings(data_dir=template / "warm", tracking_uri=_uri(template))
    registry = ModelRegistry.from_settings(settings)
    champion = registry.champion()
    assert champion is not None
    bundle, _ = registry.load(champion, cache)
    values = [v for _, v in _request_values(count, "n-", records)]
    size = settings.max_batch
    batches = [values[i : i + size] for i in range(0, len(values), size)]
    native = sum(messages.parse_requests(b, bundle.pipeline).native is not None for b in batches)
    decoder = bundle.pipeline.row_decoder("request_id", "data")
    return {
        "trees": bundle.booster.num_trees(),
        "native_batches": native,
        "batches": len(batches),
        "native_all": native == len(batches),
        "native_decoder_built": decoder is not None,
        "datetime_columns": list(bundle.pipeline.datetime_columns),
        "task": bundle.contract.task,
    }


def fetch_model(template: Path, compile_model: bool) -> tuple[Path, bool]:
    """The template's champion fetched into its warm cache, compiled if ``compile_model``:
    (the cache, whether a compiled runtime serves it)."""
    if compile_model:
        cache, _ = warm_model_cache(template)
        return cache, any((template / "warm" / "compiled-models").rglob("*.so*"))
    from streamfit.bus import MemoryBus
    from streamfit.serving import Predictor

    settings = Settings(
        data_dir=template / "warm", tracking_uri=_uri(template), compile_model=False
    )
    champion = ModelRegistry.from_settings(settings).champion()
    if champion is None or not Predictor(settings, MemoryBus()).swap_to(champion.version):
        raise RuntimeError(f"no usable champion in the registry of {template}")
    return settings.model_cache, False


def run(
    sets: list[BenchData],
    quick: bool,
    rounds: int,
    port: str,
    compile_model: bool,
    init_max_evals: int = 2,
) -> dict[str, Any]:
    """Every data set's model (``init_max_evals`` trials) and requests, then ``rounds`` rounds
    of :data:`RUNS` per data set; the results by data set. ``compile_model`` False: LightGBM
    serves (no background build)."""
    count = 30_000 if quick else 200_000  # as Adult's runs: a 100,000 run lasts about a second
    out: dict[str, Any] = {
        "requests_per_run": count,
        "rounds": rounds,
        "init_max_evals": init_max_evals,
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-data-") as tmp:
        work = Path(tmp)
        bootstrap = ensure_broker(port)
        prepared = {}
        for data in sets:
            start = time.monotonic()
            budget = ["--max-evals", str(init_max_evals)]
            template = train_model(work, [*data.init_args(), *budget], data.name)
            cache, compiled = fetch_model(template, compile_model)
            records = records_of(template, 20_000, seed=3)
            out["sets"][data.name] = {
                "data": Path(data.data).name,
                "label": data.label,
                "note": data.note,
                "prepare_s": round(time.monotonic() - start, 1),
                "served_by": "compiled runtime" if compiled else "LightGBM",
                **native_coverage(template, cache, records, count),
                "runs": {name: [] for name in RUNS},
            }
            prepared[data.name] = (template, records)
        for round_ in range(rounds):
            for name, (template, records) in prepared.items():
                for run_name, noop_commit in RUNS.items():
                    print(f"round {round_ + 1}/{rounds}: {name}, {run_name}...", flush=True)
                    result = one_run(
                        template,
                        work,
                        bootstrap,
                        count,
                        noop_commit,
                        records,
                        {"compile_model": compile_model},
                    )
                    out["sets"][name]["runs"][run_name].append(result)
    for entry in out["sets"].values():
        entry |= _ratios(entry["runs"], rounds)
    return out


def one_run(
    template: Path,
    work: Path,
    bootstrap: str,
    count: int,
    noop_commit: int | None,
    records: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One at-least-once run over ``count`` waiting requests of ``records``: the no-op loop
    given ``noop_commit``, else the predictor; with the load average at its end."""
    try:
        result = part_e2e(
            template,
            work,
            bootstrap,
            count,
            "at-least-once",
            noop_commit,
            records=records,
            settings=settings,
        )
    except Exception as exc:  # a benchmark reports what it could measure
        print(f"  failed: {exc!r}", flush=True)
        result = {"error": repr(exc)}
    return result | {"loadavg": [round(x, 2) for x in os.getloadavg()]}


def _ratios(runs: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    ratios = [
        round(runs["at-least-once"][r]["per_s"] / runs["noop"][r]["per_s"], 3)
        for r in range(rounds)
        if "per_s" in runs["at-least-once"][r] and "per_s" in runs["noop"][r]
    ]
    per_s = {
        name: round(float(np.median([r["per_s"] for r in results if "per_s" in r])))
        for name, results in runs.items()
        if any("per_s" in r for r in results)
    }
    complete = all(r.get("complete") for results in runs.values() for r in results)
    return {
        "e2e_vs_noop_per_round": ratios,
        "e2e_vs_noop": round(float(np.median(ratios)), 2) if ratios else None,
        "e2e_per_s": per_s.get("at-least-once"),
        "noop_per_s": per_s.get("noop"),
        "every_request_answered": complete,
    }


def report(results: dict[str, Any]) -> None:
    print(
        "\n| data set | task | e2e_vs_noop (target >= 0.8) | predictions/s | no-op/s "
        "| native batches | note |\n|---|---|---|---|---|---|---|"
    )
    for name, entry in results["sets"].items():
        print(
            f"| {name} | {entry['task']} | {entry['e2e_vs_noop']} | {entry['e2e_per_s']:,} "
            f"| {entry['noop_per_s']:,} | {entry['native_batches']}/{entry['batches']} "
            f"| {entry['note']} |"
        )
    machine = results["machine"]
    print(f"\n{machine['cpus']} CPUs, load average {machine['loadavg']} (at start)")


def main(
    data: BenchData | None,
    quick: bool,
    rounds: int | None,
    port: str,
    out: Path,
    compile_model: bool = True,
    init_max_evals: int = 2,
) -> int:
    """The data-set path of ``benchmarks/predictor.py``: ``data`` alone, else the suite."""
    import json

    started = time.monotonic()
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="streamfit-bench-tables-") as tables:
        sets = [data] if data else suite(Path(tables), quick)
        results["compile_model"] = compile_model
        rounds = rounds or (2 if quick else 5)
        results |= run(sets, quick, rounds, port, compile_model, init_max_evals)
    results["machine_at_end"] = _machine()
    results["wall_s"] = round(time.monotonic() - started, 1)
    report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out} ({results['wall_s']} s)")
    return 0
