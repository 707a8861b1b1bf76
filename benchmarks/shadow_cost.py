"""What shadow scoring costs the predictor, per row, side by side (``benchmarks/challenger.py``).

Two real models of the size a search round produces, each compiled as a predictor compiles it
(treelite + tl2cgen; LightGBM when there is no C compiler). The predictor's own ``process`` runs
the same request batches with the champion alone and with the challenger in its shadow slot,
interleaved in rounds so both see the same machine. Nothing but the hot path is timed: decode and
validate, transform, score (once or twice), encode, produce (to a producer that drops them).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb

from streamfit import messages
from streamfit.bus import MemoryBus, Message, Producer
from streamfit.config import Settings
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import load_adult
from streamfit.datasets.adult import requests as adult_requests
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelBundle
from streamfit.serving import Predictor
from streamfit.serving._compiled import CompileError, compile_bundle, compiled_bundle


class _Dropping(Producer):
    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass


def _model(rounds: int, seed: int, version: int, directory: Path) -> tuple[ModelBundle, bool]:
    frame = load_adult("train")
    pipeline = FeaturePipeline(ADULT).fit(frame)
    data = lgb.Dataset(
        pipeline.transform(frame), frame["label"], categorical_feature=pipeline.categorical_features
    )
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed,
              "num_leaves": 31, "learning_rate": 0.05, "bagging_fraction": 0.8,
              "bagging_freq": 1}  # fmt: skip
    bundle = ModelBundle(lgb.train(params, data, num_boost_round=rounds), pipeline, {})
    bundle.save(directory)
    bundle = ModelBundle.load(directory)
    bundle.manifest["version"] = version
    try:
        return compiled_bundle(bundle, compile_bundle(bundle, directory)), True
    except CompileError as exc:
        print(f"  v{version} stays on LightGBM: {exc}", flush=True)
        return bundle, False


def measure_shadow_cost(rows: int, batch: int, trees: int = 300) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamfit-shadow-") as scratch:
        root = Path(scratch)
        (root / "a").mkdir()
        (root / "b").mkdir()
        champion, compiled_a = _model(trees, 1, 1, root / "a")
        challenger, compiled_b = _model(trees, 2, 2, root / "b")
        settings = Settings(data_dir=root / "data", promotion="shadow", compile_model=False)
        predictor = Predictor(settings, MemoryBus())
        predictor.slot.bundle = champion
        records = adult_requests(min(rows, 16000), seed=5)
        values = [messages.request(f"r{i}", records[i % len(records)]) for i in range(rows)]
        batches = [
            [Message("requests", v, None, 0, i + j) for j, v in enumerate(values[i : i + batch])]
            for i in range(0, rows, batch)
        ]
        producer = _Dropping()
        for shadow in (None, challenger):  # warm both paths
            predictor.shadow.bundle = shadow
            predictor.process(batches[0], producer)
        rounds, plain_s, shadow_s, plain_cpu, shadow_cpu = 5, 0.0, 0.0, 0.0, 0.0
        for r in range(rounds):
            part = batches[r::rounds]
            for shadow in (None, challenger):
                predictor.shadow.bundle = shadow
                start, cpu = time.perf_counter(), time.process_time()
                for b in part:
                    predictor.process(b, producer)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                if shadow is None:
                    plain_s, plain_cpu = plain_s + wall, plain_cpu + cpu
                else:
                    shadow_s, shadow_cpu = shadow_s + wall, shadow_cpu + cpu
        scored = predictor.stats.shadow_predictions
    return {
        "rows": rows,
        "batch": batch,
        "trees_per_model": trees,
        "compiled": compiled_a and compiled_b,
        "us_per_row_champion_only": round(plain_s / rows * 1e6, 2),
        "us_per_row_with_shadow": round(shadow_s / rows * 1e6, 2),
        # Per row, as the predictor's loop sees it: the challenger scores on a thread of its
        # own beside the champion, so a free core hides part of its cost.
        "shadow_cost_ratio": round(shadow_s / plain_s, 3),
        # The CPU both models take: what a machine without a free core pays.
        "shadow_cpu_ratio": round(shadow_cpu / plain_cpu, 3),
        "shadow_scored_rows": scored,
    }
