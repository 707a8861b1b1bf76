"""Model runtimes side by side: µs per row at the batch sizes the predictor sees, exactness
against LightGBM, build time.

    python benchmarks/runtimes.py [--quick] [--model-dir DATA_DIR] [--trees 877]

Two models: the served one (the template champion ``benchmarks/predictor.py`` serves:
``streamfit init --max-evals 2``, or the champion of ``--model-dir``) and a retrained-sized one
(the champion's parameters, ``--trees`` boosting rounds: retrained champions reached 877 trees).
For each, every runtime below is built in this process (build time: annotation, code
generation and compilation), checked on the validation batch the predictor checks before a swap
(the canary, adult.test rows through the bundle's pipeline, and the same rows with missing
values and unseen categories: max |Δp| against LightGBM; exact means ≤ 1e-6, the predictor
itself refuses anything over 1e-9), then timed on adult.test rows in batches of 1, 10, 100 and
1,000, single-threaded, all runtimes interleaved round by round (the best round counts), so a
busy machine slows them all alike:

- ``lightgbm``: ``Booster.predict(num_threads=1)``, the reference.
- ``tl2cgen``: treelite 4.1 + tl2cgen 1.0 as the predictor built it before (parallel_comp=8,
  gcc -O3), as it builds it now (-O1, ``quantize=1``), with -O1 alone, with branch annotations
  from the training rows (``tl2cgen.annotate_branch``), and with both at -O1 and -O3.
- ``lleaves``: lleaves 1.3 (LLVM through llvmlite < 0.45), default options, and with cache
  blocking off (``fblocksize`` = the number of trees, its advice for single rows).
- ``onnxruntime``: onnxmltools' conversion of the booster (float32 input, ``zipmap=False``), one
  intra-op thread; skipped when not installed (``.uv/bin/uv sync --extra onnx``).

The slowest builds (-O3 with annotations and quantization; lleaves with one block: 305 s for
the served model, six times its default) run on the served model only. ``--quick`` runs the
served model only, fewer variants and rounds. Writes
``benchmarks/results/runtimes.json`` (``runtimes-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BATCHES = (1, 10, 100, 1000)
EXACT = 1e-6

sys.path.insert(0, str(REPO / "src"))  # run from a fresh clone without installing

from streamfit.config import Settings  # noqa: E402
from streamfit.datasets.adult import load_adult  # noqa: E402
from streamfit.models.bundle import ModelBundle  # noqa: E402
from streamfit.models.registry import ModelRegistry  # noqa: E402
from streamfit.serving._compiled import _route_native_logs, validation_matrix  # noqa: E402

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Variant:
    """One runtime with one set of options: how to build it, and its predict once built."""

    name: str
    build: Callable[[ModelBundle, Path], Predict]
    quick: bool = True  # also in --quick runs
    large: bool = True  # also on the retrained-sized model (False: its build takes too long)
    note: str = ""
    predict: Predict | None = field(default=None, repr=False)
    result: dict[str, Any] = field(default_factory=dict)


# -- runtimes -----------------------------------------------------------------------------------
def _lightgbm(bundle: ModelBundle, _: Path) -> Predict:
    return lambda x: bundle.booster.predict(x, num_threads=1)


def _tl2cgen(
    *, options: list[str] | None = None, annotate: bool = False, quantize: bool = False
) -> Callable[[ModelBundle, Path], Predict]:
    def build(bundle: ModelBundle, work: Path) -> Predict:
        import tl2cgen
        import treelite

        from streamfit.serving.runtimes import compiler

        model = treelite.frontend.from_lightgbm(bundle.booster)
        params: dict[str, Any] = {"parallel_comp": 8}
        if annotate:
            path = work / "annotation.json"
            rows = bundle.pipeline.transform(load_adult("train"))
            tl2cgen.annotate_branch(model, tl2cgen.DMatrix(rows), path, nthread=1)
            params["annotate_in"] = str(path)
        if quantize:
            params["quantize"] = 1
        library = work / "model.so"
        tl2cgen.export_lib(
            model,
            toolchain=Path(compiler() or "gcc").name,
            libpath=str(library),
            params=params,
            nthread=2,
            options=options,
        )
        predictor = tl2cgen.Predictor(str(library), nthread=1)

        def predict(x: np.ndarray) -> np.ndarray:
            matrix = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float64))
            return predictor.predict(matrix).reshape(-1)

        return predict

    return build


def _lleaves(*, single_block: bool = False) -> Callable[[ModelBundle, Path], Predict]:
    def build(bundle: ModelBundle, work: Path) -> Predict:
        import lleaves

        bundle.booster.save_model(str(work / "model.txt"))
        model = lleaves.Model(model_file=str(work / "model.txt"))
        options = {"fblocksize": model.num_trees()} if single_block else {}
        model.compile(cache=str(work / "model.o"), **options)
        return lambda x: model.predict(x, n_jobs=1)

    return build


def _onnxruntime(bundle: ModelBundle, _: Path) -> Predict:
    import onnxmltools
    import onnxruntime
    from onnxmltools.convert.common.data_types import FloatTensorType

    features = bundle.booster.num_feature()
    converted = onnxmltools.convert_lightgbm(
        bundle.booster, initial_types=[("input", FloatTensorType([None, features]))], zipmap=False
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        converted.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    output = session.get_outputs()[1].name  # the probabilities (the first is the label)
    return lambda x: session.run([output], {"input": x.astype(np.float32)})[0][:, 1]


def variants() -> list[Variant]:
    return [
        Variant("lightgbm", _lightgbm, note="reference"),
        Variant("tl2cgen", _tl2cgen(), note="as served before issue 13: parallel_comp=8, -O3"),
        Variant(
            "tl2cgen -O1 quantized",
            _tl2cgen(options=["-O1"], quantize=True),
            note="served when model_runtime is tl2cgen (or lleaves cannot run)",
        ),
        Variant("tl2cgen -O1", _tl2cgen(options=["-O1"])),
        Variant(
            "tl2cgen -O1 annotated",
            _tl2cgen(options=["-O1"], annotate=True),
            quick=False,
            note="branch hints from adult.data",
        ),
        Variant(
            "tl2cgen -O1 annotated quantized",
            _tl2cgen(options=["-O1"], annotate=True, quantize=True),
        ),
        Variant(
            "tl2cgen -O3 annotated quantized",
            _tl2cgen(annotate=True, quantize=True),
            quick=False,
            large=False,
        ),
        Variant("lleaves", _lleaves(), note="served (model_runtime auto)"),
        Variant(
            "lleaves one block",
            _lleaves(single_block=True),
            quick=False,
            large=False,  # 305 s for 344 trees (lleaves: 53 s): inlining one huge function
        ),
        Variant("onnxruntime", _onnxruntime, note="float32 input"),
    ]


# -- measurement --------------------------------------------------------------------------------
def time_batches(predict: Predict, rows: np.ndarray, batch: int) -> float:
    """µs per row predicting ``rows`` in slices of ``batch``."""
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        predict(rows[i : i + batch])
    return (time.perf_counter() - start) / len(rows) * 1e6


def us_per_row(
    predicts: dict[str, Predict], rows: np.ndarray, rounds: int
) -> dict[str, dict[str, float]]:
    """µs per row for each runtime and batch size, interleaved round by round; the best round."""
    best = {name: dict.fromkeys(map(str, BATCHES), float("inf")) for name in predicts}
    for predict in predicts.values():  # warm every path first
        predict(rows[:100])
    for _ in range(rounds):
        for name, predict in predicts.items():
            for batch in BATCHES:
                cost = time_batches(predict, rows, batch)
                best[name][str(batch)] = min(best[name][str(batch)], cost)
    return {n: {b: round(v, 2) for b, v in costs.items()} for n, costs in best.items()}


def measure(bundle: ModelBundle, chosen: list[Variant], rows: int, rounds: int) -> dict[str, Any]:
    """Build, check and time every variant on ``bundle``; their results by name."""
    check = validation_matrix(bundle)
    expected = bundle.booster.predict(check, num_threads=1)
    timing = bundle.pipeline.transform(load_adult("test").sample(rows, random_state=1))
    built: dict[str, Predict] = {}
    results: dict[str, dict[str, Any]] = {}
    for variant in chosen:
        print(f"  building {variant.name}...", end=" ", flush=True)
        with tempfile.TemporaryDirectory(prefix="streamfit-runtime-") as scratch:
            start = time.perf_counter()
            try:
                predict = variant.build(bundle, Path(scratch))
            except ImportError as exc:
                print(f"not installed ({exc})", flush=True)
                results[variant.name] = {"error": f"not installed: {exc}"}
                continue
            except Exception as exc:  # a benchmark reports what it could measure
                print(f"failed ({exc!r})", flush=True)
                results[variant.name] = {"error": repr(exc)}
                continue
            build_s = time.perf_counter() - start
            diff = float(np.max(np.abs(np.asarray(predict(check), dtype=np.float64) - expected)))
        print(f"{build_s:.1f} s, max |Δp| {diff:.2g}", flush=True)
        built[variant.name] = predict
        results[variant.name] = {
            "build_s": round(build_s, 1),
            "max_abs_diff": diff,
            "exact": diff <= EXACT,
            "note": variant.note,
        }
    print(f"  timing {len(built)} runtimes, {rounds} interleaved rounds...", flush=True)
    costs = us_per_row(built, timing, rounds)
    reference = costs.get("lightgbm")
    for name, cost in costs.items():
        results[name]["us_per_row"] = cost
        if reference:
            results[name]["speedup_vs_lightgbm"] = {
                b: round(reference[b] / c, 2) for b, c in cost.items()
            }
    exact = {n: r for n, r in results.items() if r.get("exact") and n != "lightgbm"}
    fastest = min(exact, key=lambda n: exact[n]["us_per_row"]["100"], default=None)
    return {
        "trees": bundle.booster.num_trees(),
        "features": bundle.booster.num_feature(),
        "checked_rows": len(check),
        "timed_rows": rows,
        "fastest_exact_at_100": fastest,
        "runtimes": results,
    }


def served_runtime_costs(bundle: ModelBundle, directory: Path, rows: int = 1000) -> dict:
    """µs per row of LightGBM and of each runtime of the family (as the predictor builds and
    verifies it: ``compile_bundle`` in ``directory``, its cache reused) on ``bundle``, side by
    side; what ``benchmarks/predictor.py`` reports as ``runtime_us_per_row``."""
    from streamfit.serving._compiled import CompileError, compile_bundle
    from streamfit.serving.runtimes import AUTO, runtimes_for

    predicts: dict[str, Predict] = {"lightgbm": _lightgbm(bundle, directory)}
    refused: dict[str, str] = {}
    served = None
    for runtime in runtimes_for(AUTO):
        try:
            compiled = compile_bundle(bundle, directory, runtime=runtime.name)
        except CompileError as exc:
            refused[runtime.name] = str(exc)
            continue
        predicts[runtime.name] = compiled.predict
        served = served or runtime.name  # "auto" serves the first that compiles and matches
    timing = bundle.pipeline.transform(load_adult("test").sample(rows, random_state=1))
    costs = us_per_row(predicts, timing, rounds=3)
    compiled_costs = {n: c["100"] for n, c in costs.items() if n != "lightgbm"}
    fastest = min(compiled_costs, key=compiled_costs.__getitem__, default=None)
    out: dict[str, Any] = {**costs, "served": served, "fastest": fastest}
    if served and fastest:
        out["served_vs_fastest_at_100"] = round(compiled_costs[served] / compiled_costs[fastest], 2)
    if refused:
        out["refused"] = refused
    return out


# -- models -------------------------------------------------------------------------------------
def served_model(model_dir: Path | None, work: Path) -> ModelBundle:
    """The template champion: ``model_dir``'s, or a new one as benchmarks/predictor.py trains."""
    if model_dir is None:
        sys.path.insert(0, str(Path(__file__).parent))
        from predictor import train_model

        model_dir = train_model(work)
    settings = Settings(data_dir=model_dir)
    registry = ModelRegistry.from_settings(settings)
    entry = registry.champion()
    if entry is None:
        raise SystemExit(f"no champion in {model_dir}")
    bundle, _ = registry.load(entry, work / "model-cache")
    return bundle


def retrained_sized(bundle: ModelBundle, trees: int) -> ModelBundle:
    """The champion's parameters, ``trees`` boosting rounds on adult.data."""
    import lightgbm as lgb

    from streamfit.training.space import DEFAULT_SPACE, lightgbm_params

    frame = load_adult("train")
    params, _cap = lightgbm_params(
        DEFAULT_SPACE,
        bundle.manifest["params"],
        threads=1,
        seed=99,
        feature_names=bundle.pipeline.feature_names,
    )
    data = lgb.Dataset(
        bundle.pipeline.transform(frame),
        frame["label"],
        categorical_feature=bundle.pipeline.categorical_features,
    )
    booster = lgb.train({**params, "verbosity": -1}, data, num_boost_round=trees)
    # The parameters go with it: a benchmark run that promotes it leaves a champion the next
    # run can retrain the same way (benchmarks/predictor.py --model-dir).
    manifest = {"trigger": "benchmark", "params": bundle.manifest["params"]}
    return ModelBundle(booster, bundle.pipeline, manifest)


# -- report -------------------------------------------------------------------------------------
def report(models: dict[str, Any]) -> None:
    for label, model in models.items():
        print(f"\n{label} model: {model['trees']} trees (µs per row, single thread)\n")
        print("| runtime | build s | max abs Δp | " + " | ".join(f"batch {b}" for b in BATCHES))
        print("|---|---:|---:|" + "---:|" * len(BATCHES))
        lightgbm = model["runtimes"].get("lightgbm", {}).get("us_per_row")
        for name, result in model["runtimes"].items():
            if "error" in result:
                print(f"| {name} | {result['error'][:60]} |")
                continue
            cells = []
            for b in map(str, BATCHES):
                cost = result["us_per_row"][b]
                ratio = f" ({lightgbm[b] / cost:.1f}x)" if lightgbm and name != "lightgbm" else ""
                cells.append(f"{cost:.2f}{ratio}")
            print(
                f"| {name} | {result['build_s']:.1f} | {result['max_abs_diff']:.1g} | "
                + " | ".join(cells)
                + " |"
            )
        print(f"\nfastest exact runtime at batch 100: {model['fastest_exact_at_100']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="served model, fewer variants")
    parser.add_argument("--model-dir", type=Path, help="data dir with a champion (else trained)")
    parser.add_argument("--trees", type=int, default=877, help="the retrained-sized model's")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    q = args.quick
    _route_native_logs()  # treelite's and tl2cgen's C++ log lines: not on the terminal
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out = args.out or RESULTS / ("runtimes-quick.json" if q else "runtimes.json")
    started = time.monotonic()
    chosen = [v for v in variants() if v.quick or not q]
    results: dict[str, Any] = {
        "mode": "quick" if q else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "2 cores shared with other engineers' work: compare ratios, not absolutes",
        },
        "batches": list(BATCHES),
        "exact_means_max_abs_diff_at_most": EXACT,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="streamfit-runtimes-") as tmp:
        work = Path(tmp)
        served = served_model(args.model_dir, work)
        models = {"served": served}
        if not q:
            print(f"training the retrained-sized model ({args.trees} trees)...", flush=True)
            models["retrained-sized"] = retrained_sized(served, args.trees)
        for label, bundle in models.items():
            print(f"{label} model ({bundle.booster.num_trees()} trees):", flush=True)
            runs = [v for v in chosen if v.large or label == "served"]
            results["models"][label] = measure(
                bundle, runs, rows=1000 if q else 2000, rounds=2 if q else 5
            )
            results["wall_s"] = round(time.monotonic() - started, 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")  # what is measured so far
    report(results["models"])
    print(f"\nwrote {out} ({results['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
