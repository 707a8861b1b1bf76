"""Label-free estimates per task: streamfit's multiclass CBPE and regression DLE beside
NannyML's (when installed), on the same models, references and chunks.

    python benchmarks/estimates.py [--quick]

For each scenario the realised metric of every chunk is computed from its labels, then each
method's estimate; the table gives the mean and largest absolute error over the chunks, and the
seconds to fit and to estimate every chunk (measured side by side in this run). Scenarios:
seeded synthetic data (3 classes; heteroscedastic regression) without shift and under a
covariate shift, and scikit-learn's bundled digits. Writes benchmarks/results/estimates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits, make_classification

from streamfit.monitoring import realised_performance
from streamfit.monitoring.estimators import MulticlassCBPE, RegressionDLE

RESULTS = Path(__file__).parent / "results" / "estimates.json"
METRICS = {"multiclass": ("accuracy", "macro_f1"), "regression": ("rmse", "mae")}
MODEL = {"n_estimators": 100, "verbose": -1, "num_threads": 1}


def multiclass_scenarios(chunks: int, size: int) -> list[dict]:
    """Three seeded classes: undrifted chunks, and chunks drawn toward the model's doubt (a
    covariate shift into harder rows); digits (10 classes, real data) undrifted."""
    x, y = make_classification(
        10_000 + 2 * chunks * size,
        10,
        n_informative=6,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=0.8,
        random_state=0,
    )
    model = lgb.LGBMClassifier(**MODEL).fit(x[:5000], y[:5000])
    reference = (model.predict_proba(x[5000:10_000]), y[5000:10_000])
    proba, labels = model.predict_proba(x[10_000:]), y[10_000:]
    rng = np.random.default_rng(1)
    calm = np.array_split(np.arange(chunks * size), chunks)
    weights = 1.0 - proba.max(axis=1) + 0.01
    shifted = [
        rng.choice(len(labels), size, replace=False, p=weights / weights.sum())
        for _ in range(chunks)
    ]
    xd, yd = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(yd))
    xd, yd = xd[order], yd[order]
    digits = lgb.LGBMClassifier(**MODEL).fit(xd[:600], yd[:600])
    digits_proba = digits.predict_proba(xd[1200:])
    return [
        {
            "name": "3 classes, no shift",
            "reference": reference,
            "chunks": [(proba[c], labels[c]) for c in calm],
        },
        {
            "name": "3 classes, toward doubt",
            "reference": reference,
            "chunks": [(proba[c], labels[c]) for c in shifted],
        },
        {
            "name": "digits, no shift",
            "reference": (digits.predict_proba(xd[600:1200]), yd[600:1200]),
            "chunks": [
                (digits_proba[c], yd[1200:][c])
                for c in np.array_split(np.arange(len(digits_proba)), 3)
            ],
        },
    ]


def regression_scenarios(chunks: int, size: int) -> list[dict]:
    """Noise growing with feature w and doubled for category c: undrifted chunks, and chunks
    along w (a covariate shift from calm to noisy rows)."""
    n = 10_000 + chunks * size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    kind = rng.choice(["a", "b", "c"], n)
    noise = np.exp(0.8 * x[:, 0]) * np.where(kind == "c", 2.0, 1.0)
    y = x @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=n) * noise
    frame = pd.DataFrame(x, columns=["w", "x1", "x2", "x3"]).assign(kind=kind)
    encoded = frame.astype({"kind": "category"})
    model = lgb.LGBMRegressor(**MODEL).fit(encoded[:5000], y[:5000])
    predictions = model.predict(encoded)

    def part(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        return predictions[rows], y[rows], frame.iloc[rows].reset_index(drop=True)

    held_out = np.arange(10_000, n)
    along_w = held_out[np.argsort(frame["w"].to_numpy()[held_out])]
    return [
        {
            "name": "heteroscedastic, no shift",
            "reference": part(np.arange(5000, 10_000)),
            "chunks": [part(c) for c in np.array_split(held_out, chunks)],
        },
        {
            "name": "heteroscedastic, along w",
            "reference": part(np.arange(5000, 10_000)),
            "chunks": [part(c) for c in np.array_split(along_w, chunks)],
        },
    ]


def streamfit_method(task: str) -> Callable:
    def run(reference: tuple, chunks: list[tuple]) -> tuple[list[dict], float, float]:
        started = time.perf_counter()
        if task == "multiclass":
            estimator = MulticlassCBPE().fit(*reference)
        else:
            estimator = RegressionDLE().fit(reference[0], reference[1], reference[2])
        fitted = time.perf_counter()
        estimates = [
            estimator.estimate(c[0]) if task == "multiclass" else estimator.estimate(c[0], c[2])
            for c in chunks
        ]
        return estimates, fitted - started, time.perf_counter() - fitted

    return run


def nannyml_method(task: str) -> Callable | None:
    """NannyML 0.13's CBPE (multiclass, isotonic calibration) or DLE, one chunk per streamfit
    chunk; None when NannyML is not installed."""
    try:
        import nannyml as nml
    except ImportError:
        return None
    import logging
    import warnings

    nml.disable_usage_logging()  # no telemetry calls from a benchmark
    logging.getLogger("nannyml").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    # NannyML 0.13's DLE reshapes its encoded category columns as NumPy arrays: under pandas 3's
    # default string dtype they are Arrow-backed and cannot be. Keep strings as objects.
    pd.set_option("future.infer_string", False)

    def frame(part: tuple) -> pd.DataFrame:
        if task == "multiclass":
            proba, labels = part[0], part[1]
            out = pd.DataFrame({f"p{c}": proba[:, c] for c in range(proba.shape[1])})
            out["pred"] = [f"c{c}" for c in proba.argmax(axis=1)]
            out["target"] = [f"c{c}" for c in labels]
            return out
        out = part[2].astype({"kind": object}).copy()
        out["pred"], out["target"] = part[0], part[1]
        return out

    def run(reference: tuple, chunks: list[tuple]) -> tuple[list[dict], float, float]:
        started = time.perf_counter()
        size = len(chunks[0][0])
        if task == "multiclass":
            k = reference[0].shape[1]
            estimator = nml.CBPE(
                y_pred_proba={f"c{c}": f"p{c}" for c in range(k)},
                y_pred="pred",
                y_true="target",
                problem_type="classification_multiclass",
                metrics=["accuracy", "f1"],
                chunk_size=size,
            )
        else:
            estimator = nml.DLE(
                feature_column_names=list(reference[2].columns),
                y_pred="pred",
                y_true="target",
                metrics=["rmse", "mae"],
                chunk_size=size,
            )
        estimator.fit(frame(reference))
        fitted = time.perf_counter()
        estimates = []
        for chunk in chunks:
            analysis = frame(chunk)
            if task == "multiclass":  # NannyML's DLE reads the column (its realised values)
                analysis = analysis.drop(columns=["target"])
            result = estimator.estimate(analysis).filter(period="analysis").to_df()
            names = ("accuracy", "f1") if task == "multiclass" else ("rmse", "mae")
            values = {m: float(result[(m, "value")].iloc[0]) for m in names}
            if task == "multiclass":
                estimates.append({"accuracy": values["accuracy"], "macro_f1": values["f1"]})
            else:
                estimates.append({"rmse": values["rmse"], "mae": values["mae"]})
        return estimates, fitted - started, time.perf_counter() - fitted

    return run


def evaluate(task: str, scenario: dict, methods: dict[str, Callable]) -> dict:
    realised = [realised_performance(task, c[1], c[0]) for c in scenario["chunks"]]
    row: dict = {
        "chunks": len(realised),
        "rows_per_chunk": len(scenario["chunks"][0][0]),
        "realised": {m: [r[m] for r in realised] for m in METRICS[task]},
    }
    for name, method in methods.items():
        estimates, fit_s, estimate_s = method(scenario["reference"], scenario["chunks"])
        row[name] = {"fit_seconds": fit_s, "estimate_seconds": estimate_s}
        for metric in METRICS[task]:
            errors = np.abs(
                [e[metric] - r[metric] for e, r in zip(estimates, realised, strict=True)]
            )
            row[name][metric] = {
                "mean_abs_error": float(errors.mean()),
                "max_abs_error": float(errors.max()),
                "estimates": [float(e[metric]) for e in estimates],
            }
    return row


def table(results: dict) -> str:
    lines = [
        f"{'scenario':<28} {'metric':<9} {'realised':>9} "
        f"{'streamfit err':>14} {'nannyml err':>12} {'fit s (sf/nml)':>15} {'est s (sf/nml)':>15}"
    ]
    for task, rows in results["tasks"].items():
        for name, row in rows.items():
            ours, theirs = row["streamfit"], row.get("nannyml")
            for metric in METRICS[task]:
                realised = float(np.mean(row["realised"][metric]))
                nanny = f"{theirs[metric]['mean_abs_error']:.4f}" if theirs else "-"
                fit = f"{ours['fit_seconds']:.2f}/" + (
                    f"{theirs['fit_seconds']:.2f}" if theirs else "-"
                )
                est = f"{ours['estimate_seconds']:.2f}/" + (
                    f"{theirs['estimate_seconds']:.2f}" if theirs else "-"
                )
                lines.append(
                    f"{name:<28} {metric:<9} {realised:9.4f} "
                    f"{ours[metric]['mean_abs_error']:14.4f} {nanny:>12} {fit:>15} {est:>15}"
                )
    lines.append("err: mean absolute error of the estimate against the realised metric per chunk")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks")
    args = parser.parse_args(argv)
    chunks, size = (4, 1000) if args.quick else (10, 1000)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()},
        "chunks": chunks,
        "tasks": {},
    }
    for task, scenarios in (
        ("multiclass", multiclass_scenarios(chunks, size)),
        ("regression", regression_scenarios(chunks, size)),
    ):
        methods = {"streamfit": streamfit_method(task)}
        nanny = nannyml_method(task)
        if nanny is not None:
            methods["nannyml"] = nanny
        results["tasks"][task] = {s["name"]: evaluate(task, s, methods) for s in scenarios}
    results["machine"]["load_average_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
