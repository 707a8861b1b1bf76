"""Drift-monitoring benchmark on UCI Adult: false alarms, detection delay and attribution,
scoring time, and the error of label-free (CBPE) accuracy estimates.

    python benchmarks/drift.py [--quick] [--overhead-only]

Prints a table and writes benchmarks/results/drift.json. Everything runs through the library's
public API; the delay part streams rows through the real ObservationStore and Monitor.

The overhead part measures the predictor's throughput (the real ``Predictor`` loop on the
in-process bus, a ``Recorder`` beside it writing the observation store) with no monitor, with
the monitor as a thread in the same process (as ``streamfit demo`` runs it) and as its own
process (``streamfit monitor``), side by side and interleaved in one run. ``--overhead-only``
runs just that part and updates the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from streamfit import messages
from streamfit.bus import MemoryBus
from streamfit.config import Settings
from streamfit.datasets.adult import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, load_adult
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.datasets.adult import requests as adult_requests
from streamfit.drift.detector import _correct
from streamfit.features import FeaturePipeline
from streamfit.models.bundle import ModelBundle
from streamfit.monitoring import (
    AlarmBudget,
    DriftDetector,
    Monitor,
    ProbabilityCalibrator,
    SequentialScan,
    alarm_budget,
    build_monitor,
    detector_from_settings,
    estimate_performance,
    realised_metrics,
)
from streamfit.recording import Recorder
from streamfit.serving import Predictor

RESULTS = Path(__file__).parent / "results" / "drift.json"
TARGETS = {
    "false_alarm_rate": 0.01,
    "detection_rate": 0.95,
    "ranked_first": 0.95,
    "ert_checks": 100,
    "five_point_within_5000": 0.95,
    "cpu_seconds_1000": 0.5,
    "accuracy_error": 0.02,
    "throughput_ratio": 0.9,
}
STREAMFIT = Path(sys.executable).with_name("streamfit")


# -- scenarios: windows of adult.test against adult.data ----------------------------------------
# Each scenario draws 1,000-row windows from adult.test (without replacement within a window: a
# duplicated row lets the domain classifier memorise it) with row weights that produce the shift.
def draw(frame: pd.DataFrame, n: int, rng: np.random.Generator, weights=None) -> pd.DataFrame:
    p = None if weights is None else weights / weights.sum()
    return frame.iloc[rng.choice(len(frame), n, replace=False, p=p)].reset_index(drop=True)


def share_weights(frame: pd.DataFrame, feature: str, category: str, points: float) -> np.ndarray:
    """Row weights moving ``category``'s share of ``feature`` by ``points`` (0.10 = 10 points)."""
    hit = (frame[feature] == category).fillna(False).to_numpy()
    share = hit.mean()
    return np.where(hit, (share + points) / share, (1 - share - points) / (1 - share))


def scenarios(test: pd.DataFrame) -> dict[str, tuple[Callable[..., pd.DataFrame], str | None]]:
    """name -> (make(rng, n) -> window, the truly shifted feature)."""
    fewer_men = share_weights(test, "gender", "Male", -0.10)
    self_employed = test["workclass"].str.startswith("Self-emp").fillna(False).to_numpy()
    age_sigma = float(test["age"].std())

    def older(rng: np.random.Generator, n: int) -> pd.DataFrame:
        window = draw(test, n, rng)
        window["age"] = window["age"] + 0.25 * age_sigma  # +0.25 sd, about 3.4 years
        return window

    def zeroed(rng: np.random.Generator, n: int) -> pd.DataFrame:
        window = draw(test, n, rng)
        window.loc[rng.random(n) < 0.10, "hours_per_week"] = 0.0  # a broken upstream field
        return window

    return {
        "no_shift": (lambda rng, n: draw(test, n, rng), None),
        "share_male_-10pt": (lambda rng, n: draw(test, n, rng, fewer_men), "gender"),
        "age_+0.25sd": (older, "age"),
        "self_employed_x2": (
            lambda rng, n: draw(test, n, rng, np.where(self_employed, 2.0, 1.0)),
            "workclass",
        ),
        "hours_10pct_zeroed": (zeroed, "hours_per_week"),
    }


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


# -- a quick model, for the probabilities the predictor would store --------------------------------
def _encode(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    x = frame[list(FEATURE_COLUMNS)].copy()
    for name in CATEGORICAL_COLUMNS:
        known = x[name].where(x[name].isin(categories[name]))  # unseen -> missing
        x[name] = pd.Categorical(known, categories=categories[name])
    return x


def train_model(train: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
    categories = {c: sorted(train[c].dropna().unique()) for c in CATEGORICAL_COLUMNS}
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "verbose": -1}
    params |= {"num_threads": 2, "seed": 0}
    data = lgb.Dataset(_encode(train, categories), train["label"])
    booster = lgb.train(params, data, num_boost_round=300)
    return lambda frame: booster.predict(_encode(frame, categories))


# -- benchmark parts -------------------------------------------------------------------------------
def window_alarms(
    detector: DriftDetector, test: pd.DataFrame, windows: int, size: int, nanny_windows: int
) -> dict:
    """Per scenario: streamfit's alarm rate and the shifted feature's rank, and NannyML's
    univariate and domain-classifier calculators on the very same windows when importable (the
    classifier on the first ``nanny_windows`` of them: it costs far more than the rest)."""
    nanny = nannyml_calculators(detector, windows, size)
    results = {}
    for index, (name, (make, feature)) in enumerate(scenarios(test).items()):
        rng = np.random.default_rng(100 + index)
        frames = [make(rng, size) for _ in range(windows)]
        reports = [detector.score(frame) for frame in frames]
        alarms = [r.drifted for r in reports]
        row: dict = {
            "shifted_feature": feature,
            "windows": windows,
            "streamfit": {
                "alarm_rate": float(np.mean(alarms)),
                "feature_alarm_rate": float(np.mean([bool(r.drifted_features) for r in reports])),
                "classifier_alarm_rate": float(np.mean([r.classifier_drifted for r in reports])),
                "ranked_first": _ranked_first(
                    [r.ranking()[0] for r, alarm in zip(reports, alarms, strict=True) if alarm],
                    feature,
                ),
                "features_flagged": _count(n for r in reports for n in r.drifted_features),
            },
        }
        if nanny is not None:
            row.update(nanny(frames, feature, nanny_windows))
        results[name] = row
    return results


def _ranked_first(tops: list[str], feature: str | None) -> float | None:
    if feature is None or not tops:
        return None
    return float(np.mean([top == feature for top in tops]))


def _count(names) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def nannyml_calculators(detector: DriftDetector, windows: int, size: int):
    """A function scoring a scenario's windows with NannyML 0.13 (univariate Jensen-Shannon with
    its learnt thresholds; the domain classifier, 5 folds, alarm outside AUC 0.45-0.65), both
    fitted once on the same reference as streamfit; None when NannyML is not installed."""
    try:
        import nannyml as nml
    except ImportError:
        return None
    import logging
    import warnings

    nml.disable_usage_logging()  # no telemetry calls from a benchmark
    logging.getLogger("nannyml").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    names = list(detector.kinds)
    categorical = [n for n, k in detector.kinds.items() if k == "categorical"]
    reference = _nanny_frame(REFERENCE_FOR_NANNY[0], names)
    univariate = nml.UnivariateDriftCalculator(
        column_names=names, treat_as_categorical=categorical, chunk_size=size
    ).fit(reference)
    params = {"n_estimators": 100, "n_jobs": 1, "random_state": 13, "verbosity": -1}
    classifier = nml.DomainClassifierCalculator(
        feature_column_names=names,
        treat_as_categorical=categorical,
        chunk_size=size,
        hyperparameters=params,
    ).fit(reference)

    def score(frames: list[pd.DataFrame], feature: str | None, classifier_windows: int) -> dict:
        analysis = _nanny_frame(pd.concat(frames, ignore_index=True), names)
        uni = univariate.calculate(analysis).filter(period="analysis").to_df()
        values = uni.xs("value", axis=1, level=-1).droplevel(-1, axis=1)
        alerts = uni.xs("alert", axis=1, level=-1).droplevel(-1, axis=1).astype(bool)
        uni_alarm = alerts.any(axis=1).to_numpy()
        tops = [values.iloc[i].idxmax() for i in range(len(values)) if uni_alarm[i]]
        subset = analysis.iloc[: classifier_windows * size].reset_index(drop=True)
        dc = classifier.calculate(subset).filter(period="analysis").to_df()
        dc_alarm = dc.xs("alert", axis=1, level=-1).iloc[:, 0].astype(bool).to_numpy()
        return {
            "nannyml_univariate": {
                "alarm_rate": float(np.mean(uni_alarm)),
                "ranked_first": _ranked_first(tops, feature),
            },
            "nannyml_domain_classifier": {
                "alarm_rate": float(np.mean(dc_alarm)),
                "windows": int(dc_alarm.size),
            },
        }

    return score


REFERENCE_FOR_NANNY: list[pd.DataFrame] = []


def _nanny_frame(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """NannyML with pandas 3: a fresh RangeIndex, numerics as float, categories as object."""
    out = frame[names].reset_index(drop=True).copy()
    for name in names:
        if out[name].dtype.kind not in "fi":
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


class FreshRows:
    """Rows of ``frame`` for a simulated stream, none repeated within ``distinct`` consecutive
    rows: every check then sees a simple random sample of the population ``frame`` was drawn
    from (a subset drawn without replacement from a random sample is one).

    Drawn *with* replacement, a stream's rows come from ``frame``'s empirical distribution,
    which differs from the population by ``frame``'s own sampling noise: an extra variance the
    two-sample tests cannot know of, 1 / 16,281 (adult.test) against the 1 / 4,000 + 1 / 26,048
    they allow for on the scan's longest span, 22 % more, which at the scan's level of about
    3.6 sigma triples the tail. Live traffic from an unchanged population has no such term."""

    def __init__(self, frame: pd.DataFrame, rng: np.random.Generator, distinct: int) -> None:
        if distinct >= len(frame):
            raise ValueError(f"cannot keep {distinct} rows distinct out of {len(frame)}")
        self.frame, self.rng, self.distinct = frame, rng, distinct
        self.available = np.ones(len(frame), dtype=bool)
        self.recent: list[np.ndarray] = []

    def take(self, n: int, weights: np.ndarray | None = None) -> pd.DataFrame:
        pool = np.flatnonzero(self.available)
        p = None if weights is None else weights[pool] / weights[pool].sum()
        chosen = self.rng.choice(pool, n, replace=False, p=p)
        self.available[chosen] = False
        self.recent.append(chosen)
        while sum(map(len, self.recent)) > self.distinct:
            self.available[self.recent.pop(0)] = True
        return self.frame.iloc[chosen].reset_index(drop=True)


def sequential(
    detector: DriftDetector, test: pd.DataFrame, settings: Settings, runs: int, ert_checks: int
) -> dict:
    """The monitor's alarm on simulated streams, check by check as ``Monitor.run_once`` makes it
    (``detector`` is the monitor's: ``detector_from_settings(settings, ADULT, monitor=True)``): the
    window's feature tests (Holm, at the detector's share of the budget) on the last
    ``drift_window`` rows, or only those since the last alarm (the restart), and the change scan
    on the block of ``drift_every`` new rows; after an alarm from either, both restart. Left out
    for time: the domain classifier (most of a check's cost; its own false-alarm rate is in the
    window table) and the output and label tests (the stream has no served model); their shares
    of the budget stay unspent here, so the run length measured is that of the feature layers.

    * run length: undrifted streams, checks counted until ``ert_checks``; ERT = checks / alarms;
    * delay: a 5-point fall of the share of men from a random point after 2,000 messages,
      messages from the change to the first alarm (capped at 10,000)."""
    every, size = settings.drift_every, settings.drift_window
    budget = alarm_budget(settings, ADULT)
    five_points = share_weights(test, "gender", "Male", -0.05)

    class Stream:
        """One monitor's alarm state over a stream: what run_once keeps between checks."""

        def __init__(self) -> None:
            self.scan = SequentialScan(detector.reference_counts, settings.drift_ert)
            self.fresh = size  # rows since the last alarm (a fresh monitor: a whole window)

        def check(self, recent: pd.DataFrame) -> tuple[bool, bool]:
            """``recent``: the last ``size`` rows, the newest ``every`` of them new."""
            self.fresh += every
            window = recent.tail(AlarmBudget.window_rows(size, self.fresh))
            p_values = list(detector.feature_p_values(window).values())
            by_window = min(_correct(p_values, detector.correction)) < detector.alpha
            by_scan = bool(self.scan.update(detector.feature_counts(recent.tail(every))))
            if by_window or by_scan:
                self.scan.reset()
                self.fresh = 0
            return by_window, by_scan

    rng = np.random.default_rng(7)
    fresh_rows = FreshRows(test, rng, SequentialScan(detector.reference_counts).max_checks * every)

    def rows(rng: np.random.Generator, n: int, weights=None) -> pd.DataFrame:
        return pd.concat([fresh_rows.take(every, weights) for _ in range(0, n, every)])[:n]

    recent, monitor = rows(rng, size), Stream()
    checks, window_alarms, scan_alarms, both = 0, 0, 0, 0
    started = time.perf_counter()
    while checks < ert_checks:
        recent = pd.concat([recent, rows(rng, every)], ignore_index=True).tail(size)
        by_window, by_scan = monitor.check(recent)
        checks += 1
        window_alarms += by_window
        scan_alarms += by_scan
        both += by_window and by_scan
        if checks % 100 == 0:
            print(
                f"  undrifted checks: {checks}/{ert_checks} "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    alarms = window_alarms + scan_alarms - both  # checks that alarmed
    delays: list[int | None] = []
    caught_by = {"window": 0, "sequential": 0}
    for run in range(runs):
        change = 2000 + int(rng.integers(every))
        before, after = rows(rng, change), rows(rng, 10_000 + every, five_points)
        stream = pd.concat([before, after], ignore_index=True)
        monitor, position, delay = Stream(), size, None
        while position + every <= len(stream) and delay is None:
            position += every
            by_window, by_scan = monitor.check(stream.iloc[position - size : position])
            if (by_window or by_scan) and position > change:
                delay = position - change
                caught_by["sequential" if by_scan else "window"] += 1
        delays.append(delay)
        if (run + 1) % 20 == 0:
            print(f"  5-point runs: {run + 1}/{runs}", file=sys.stderr, flush=True)
    found = sorted(d for d in delays if d is not None)
    return {
        "settings": {"drift_every": every, "drift_window": size, "ert": settings.drift_ert},
        "budget": {
            "per_check": 1 / budget.ert,
            "window": budget.window,
            "window_tests": budget.window_tests,
            "output_test_each": budget.output_test,
            "scan": budget.scan,
        },
        "window_alpha": detector.alpha,
        "sequential_threshold": monitor.scan.threshold,
        "sequential_spans": monitor.scan.spans,
        "restart_after_alarm": True,
        "undrifted_checks": checks,
        "false_alarms": {"window": window_alarms, "sequential": scan_alarms, "both": both},
        "false_alarm_checks": alarms,
        "expected_false_alarms_at_most": checks / budget.ert,
        "measured_ert_sequential_lower_bound": checks / max(scan_alarms, 1),
        "measured_ert": checks / alarms if alarms else None,
        "measured_ert_lower_bound": checks / max(alarms, 1),
        "five_point_runs": runs,
        "five_point_detected": len(found),
        "five_point_first_alarm_by": caught_by,
        "median_delay": float(np.median(found)) if found else None,
        "p95_delay": float(np.quantile(found, 0.95)) if found else None,
        "within_5000": float(np.mean([d is not None and d <= 5000 for d in delays])),
    }


def timing(detector: DriftDetector, test: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """CPU seconds of one check on a 1,000-row window (thread CPU time, so the figure is one
    core's work whatever else the shared machine runs); fitting too."""
    window = test.sample(1000, random_state=3)
    detector.score(window)  # warm-up: imports, the cached reference encoding
    seconds, wall = [], []
    for _ in range(5):
        started, cpu = time.perf_counter(), time.thread_time()
        detector.score(window)
        seconds.append(time.thread_time() - cpu)
        wall.append(time.perf_counter() - started)
    cpu = time.thread_time()
    detector.feature_p_values(window)
    tests_only = time.thread_time() - cpu
    cpu = time.thread_time()
    DriftDetector.for_contract(ADULT).fit(reference)
    return {
        "cpu_seconds_1000_median": statistics.median(seconds),
        "cpu_seconds_1000_max": max(seconds),
        "wall_seconds_1000_median": statistics.median(wall),
        "cpu_seconds_1000_feature_tests_only": tests_only,
        "fit_cpu_seconds": time.thread_time() - cpu,
    }


def estimation(
    test: pd.DataFrame,
    predict: Callable[[pd.DataFrame], np.ndarray],
    calibrator: ProbabilityCalibrator,
    windows: int,
    size: int,
) -> dict:
    rng = np.random.default_rng(4)
    proba = predict(test)
    rows = []
    for _ in range(windows):
        index = rng.choice(len(test), size, replace=False)
        y, p = test["label"].to_numpy()[index], proba[index]
        realised = realised_metrics(y, p)
        raw, calibrated = estimate_performance(p), estimate_performance(p, calibrator=calibrator)
        rows.append(
            (
                realised["accuracy"] - raw["accuracy"],
                realised["accuracy"] - calibrated["accuracy"],
                realised["auc"] - calibrated["auc"],
            )
        )
    errors = np.abs(np.array(rows))
    shifted = {}
    for shift, (make, feature) in scenarios(test).items():
        if feature is None:
            continue
        window = make(np.random.default_rng(5), size)
        p = predict(window)
        shifted[shift] = float(
            realised_metrics(window["label"].to_numpy(), p)["accuracy"]
            - estimate_performance(p, calibrator=calibrator)["accuracy"]
        )
    return {
        "windows": windows,
        "window_rows": size,
        "accuracy_mae_raw": float(errors[:, 0].mean()),
        "accuracy_mae": float(errors[:, 1].mean()),
        "accuracy_p95_error": float(np.quantile(errors[:, 1], 0.95)),
        "accuracy_within_2pp": float(np.mean(errors[:, 1] <= 0.02)),
        "auc_mae": float(errors[:, 2].mean()),
        "mean_bias": float(np.mean(np.array(rows)[:, 1])),
        "realised_minus_estimated_on_shifted": shifted,
    }


# -- the predictor's throughput with and without the monitor ---------------------------------------
def champion_bundle(train: pd.DataFrame) -> ModelBundle:
    """A model of the size a search picks (31 leaves, 300 rounds), trained without a search."""
    pipeline = FeaturePipeline(ADULT).fit(train)
    data = lgb.Dataset(
        pipeline.transform(train),
        train["label"],
        categorical_feature=pipeline.categorical_features,
        free_raw_data=False,
    )
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "verbose": -1}
    booster = lgb.train(params | {"num_threads": 2, "seed": 0}, data, num_boost_round=300)
    return ModelBundle(booster, pipeline, {"mlflow_run_id": None})


def predictor_throughput(
    settings: Settings, payloads: list[bytes], monitor: str
) -> tuple[float, int, float | None]:
    """Rows/s of the real predictor loop draining ``payloads`` already waiting on ``requests``;
    with ``monitor`` "none", "thread" (same process) or "process" (``streamfit monitor``).
    Returns (rows/s, drift checks the monitor ran meanwhile, the monitor process's CPU seconds
    per second of the run: a share of one core that does not depend on other load)."""
    bus = MemoryBus()
    topics = settings.topics
    answers = bus.consumer([topics.predictions], group=None)
    predictor = Predictor(settings, bus)
    # The recorder runs in every mode, as in production: it writes the observation store the
    # monitor reads (the predictor no longer does), so the baseline is predictor + recorder.
    recorder = Recorder(settings, bus)
    checker: Monitor | None = None
    process: subprocess.Popen | None = None
    log_path = settings.data_dir / f"monitor-{time.monotonic_ns()}.log"
    if monitor == "thread":
        checker = build_monitor(settings, bus, track=False)  # fitted before the clock starts
    elif monitor == "process":
        process = _monitor_process(settings, log_path)
    producer = bus.producer()
    for i, payload in enumerate(payloads):  # all waiting before the predictor starts
        producer.produce(topics.requests, payload, str(i).encode())
    if checker is not None:
        checker.start()
    thread = threading.Thread(target=predictor.run, daemon=True)
    thread.start()
    if not predictor.ready.wait(60):  # set once the model is loaded and the loop consumes
        raise RuntimeError("the predictor did not start within 60 s")
    cpu_before = _cpu_seconds(process.pid) if process is not None else 0.0
    started = time.perf_counter()
    # The recorder starts once the predictor consumes: the in-memory bus trims a topic up to
    # the slowest *existing* group's commit, so a recorder committing ``requests`` before the
    # predictor's group existed dropped requests the predictor never saw.
    recording = threading.Thread(target=recorder.run, name="recorder", daemon=True)
    recording.start()
    answered = 0
    while answered < len(payloads):
        got = answers.poll(10_000, timeout=30)
        if not got:
            raise RuntimeError(f"predictor stalled after {answered} answers")
        answered += len(got)
    seconds = time.perf_counter() - started
    cpu_share = (_cpu_seconds(process.pid) - cpu_before) / seconds if process else None
    checks = 0
    if checker is not None:
        checker.close()
        checks = checker.step
    if process is not None:
        process.terminate()
        process.wait(30)
        checks = log_path.read_text().count("drift check ")
    predictor.stop()
    thread.join(30)
    recorder.stop()
    recording.join(30)
    bus.close()
    return len(payloads) / seconds, checks, cpu_share


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _monitor_process(settings: Settings, log_path: Path) -> subprocess.Popen:
    command = [
        str(STREAMFIT),
        "monitor",
        "--data-dir",
        str(settings.data_dir),
        "--no-tracking",
        "--log-level",
        "INFO",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    handle = log_path.open("w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while "monitor: checking" not in log_path.read_text():  # fitted and polling
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"streamfit monitor did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def register_champion(settings: Settings, bundle: ModelBundle) -> int:
    """Register ``bundle`` in the settings' registry and make it @champion through the one
    promotion path: predictors and the monitor follow the registry, not a local pointer."""
    from streamfit.models.promotion import promote
    from streamfit.tracking import get_tracker

    tracker = get_tracker(settings)
    test = load_adult("test")
    example = test[list(FEATURE_COLUMNS)].dropna().head(5).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as scratch:
        bundle.save(Path(scratch))
        tracker.start_round("benchmark-drift", {})
        try:
            version = tracker.log_model(Path(scratch), example, [0.5] * len(example))
        finally:
            tracker.end_round()
    if version is None:
        raise RuntimeError("the tracker registered no model version")
    promote(settings, version, by="benchmark")
    return version


def monitor_overhead(train: pd.DataFrame, rows: int, repeats: int) -> dict:
    """Throughput without the monitor, with it in a thread and in its own process, interleaved."""
    requests = adult_requests(rows, seed=5)  # labels ride along (demo mode): metrics have data
    modes = ("none", "thread", "process")
    rates: dict[str, list[float]] = {m: [] for m in modes}
    checks: dict[str, list[int]] = {m: [] for m in modes}
    cpu_shares: list[float] = []
    bundle = champion_bundle(train)
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(-1, repeats):  # -1: a warm-up round, not counted
            # Rotated order: no mode always runs first (or right after the same one).
            for mode in modes[repeat % 3 :] + modes[: repeat % 3]:
                # A fresh store per run: every run pays the same SQLite inserts from row 1.
                # One compiled-model cache for all runs: the warm-up builds the model once, and
                # no timed run pays a compile (tens of CPU seconds).
                settings = Settings(
                    data_dir=Path(tmp) / f"{mode}-{repeat}", compiled_cache=str(Path(tmp) / "cc")
                )
                register_champion(settings, ModelBundle(bundle.booster, bundle.pipeline, {}))
                payloads = [
                    messages.request(f"{repeat}-{i}", data) for i, data in enumerate(requests)
                ]
                if repeat < 0 and mode != "none":
                    continue
                rate, ran, cpu_share = predictor_throughput(
                    settings, payloads[: rows // 5] if repeat < 0 else payloads, mode
                )
                if repeat >= 0:
                    rates[mode].append(rate)
                    checks[mode].append(ran)
                    if cpu_share is not None:
                        cpu_shares.append(cpu_share)
    median = {m: statistics.median(r) for m, r in rates.items()}
    # Paired: each repeat's ratio against the run without a monitor of the same repeat, so a
    # load change on the (shared) machine between repeats cancels out; then the median.
    paired = {
        m: [r / base for r, base in zip(rates[m], rates["none"], strict=True)]
        for m in ("thread", "process")
    }
    return {
        "rows_per_run": rows,
        "repeats": repeats,
        "cores": os.cpu_count(),
        "load_average_after": os.getloadavg(),
        "rows_per_s": rates,
        "median_rows_per_s": median,
        "drift_checks_per_run": checks,
        "monitor_process_cpu_share": cpu_shares,
        "paired_ratios": paired,
        "ratio_thread": statistics.median(paired["thread"]),
        "ratio_process": statistics.median(paired["process"]),
        "settings": {"drift_window": 1000, "drift_every": 250, "monitor_poll_seconds": 1.0},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and streams")
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="only the predictor throughput with/without the monitor; updates the JSON",
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the throughput part")
    parser.add_argument(
        "--only",
        choices=("windows", "sequential"),
        help="run one part and merge it into the JSON (two parts can run side by side)",
    )
    parser.add_argument("--windows", type=int, help="windows per scenario (default 100)")
    parser.add_argument(
        "--nannyml-classifier-windows",
        type=int,
        help="of those, scored by NannyML's domain classifier too (it costs the most)",
    )
    parser.add_argument("--ert-checks", type=int, help="undrifted checks for the ERT")
    args = parser.parse_args(argv)
    windows, runs, ert_checks = (30, 20, 150) if args.quick else (100, 100, 1000)
    windows = args.windows or windows
    ert_checks = args.ert_checks or ert_checks
    nanny_windows = min(args.nannyml_classifier_windows or windows, windows)

    train, test = load_adult("train"), load_adult("test")
    overhead = None
    if not args.no_overhead:
        overhead = monitor_overhead(
            train, 40_000 if args.quick else 120_000, 3 if args.quick else 5
        )
    if args.overhead_only:
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results["monitor_overhead"] = overhead
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print("\n".join(overhead_lines(overhead)))
        print(f"\nwrote {RESULTS}")
        return 0
    # The model trains on 80 % of adult.data (its reference for drift); the rest calibrates.
    fit_rows = train.sample(frac=0.8, random_state=0)
    calibration_rows = train.drop(fit_rows.index)
    reference = fit_rows.reset_index(drop=True)
    REFERENCE_FOR_NANNY[:] = [reference]
    settings = Settings(drift_window=1000, drift_every=250)
    detector = detector_from_settings(settings, ADULT).fit(reference)

    started = time.perf_counter()
    predict = train_model(fit_rows)
    calibrator = ProbabilityCalibrator().fit(predict(calibration_rows), calibration_rows["label"])
    model_seconds = time.perf_counter() - started

    results = {
        "settings": {
            k: getattr(settings, k)
            for k in (
                "drift_window",
                "drift_every",
                "drift_reference_rows",
                "drift_alpha",
                "drift_correction",
                "drift_psi_floor",
                "drift_score_floor",
                "drift_ert",
                "drift_folds",
                "drift_classifier",
            )
        },
        "quick": args.quick,
        "machine": {"cores": os.cpu_count(), "load_average_start": os.getloadavg()},
        "targets": TARGETS,
    }
    if args.only != "sequential":
        print(f"windows: {windows} per scenario ...", file=sys.stderr, flush=True)
        results["windows"] = window_alarms(
            detector, test, windows, settings.drift_window, nanny_windows
        )
        results["timing"] = timing(detector, test, reference)
        results["estimation"] = estimation(test, predict, calibrator, 100, 2000)
    if args.only != "windows":
        print("sequential monitor ...", file=sys.stderr, flush=True)
        monitor_detector = detector_from_settings(settings, ADULT, monitor=True).fit(reference)
        results["sequential"] = sequential(monitor_detector, test, settings, runs, ert_checks)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.only is not None:  # the other part's figures stay, from their own run
        parts = ("windows", "timing", "estimation", "sequential", "monitor_overhead")
        results = {**{k: v for k, v in previous.items() if k in parts}, **results}
    if overhead is not None:
        results["monitor_overhead"] = overhead
    elif "monitor_overhead" in previous:  # --no-overhead: keep the last measured figures
        results["monitor_overhead"] = previous["monitor_overhead"]
    results["model_seconds"] = model_seconds
    results["machine"]["load_average_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if "windows" in results and "sequential" in results:
        print(table(results))
    print(f"\nwrote {RESULTS}")
    return 0


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def table(results: dict) -> str:
    timing_, est, seq = results["timing"], results["estimation"], results["sequential"]
    lines = [
        f"{'1,000-row windows (' + str(results['windows']['no_shift']['windows']) + ' each)':<26}"
        f" {'streamfit':>17} {'NannyML univariate':>20} {'NannyML domain clf':>19}",
        f"{'':<26} {'alarms  1st':>17} {'alarms  1st':>20} {'alarms':>19}",
    ]
    for name, row in results["windows"].items():
        ours = row["streamfit"]
        uni = row.get("nannyml_univariate", {})
        dc = row.get("nannyml_domain_classifier", {})
        lines.append(
            f"{name:<26} {_rate(ours['alarm_rate']):>10} {_rate(ours['ranked_first']):>6} "
            f"{_rate(uni.get('alarm_rate')):>13} {_rate(uni.get('ranked_first')):>6} "
            f"{_rate(dc.get('alarm_rate')):>19}"
        )
    lines += [
        "targets: no_shift <= 1 %; share and +0.25 sd >= 95 %; shifted feature first >= 95 %",
        "",
        f"{'sequential monitor (every ' + str(seq['settings']['drift_every']) + ' messages)':<52}"
        f" {'value':>14}  target",
        f"{'  undrifted checks / false alarms (window, scan)':<52} "
        f"{seq['undrifted_checks']:>6} / {seq['false_alarms']['window']}, "
        f"{seq['false_alarms']['sequential']}",
        f"{'  measured ERT (checks between false alarms)':<52} "
        f"{'>= ' + str(round(seq['measured_ert_lower_bound'])):>14}  >= 100",
        f"{'  5-point share change: median / p95 delay':<52} "
        f"{seq['median_delay'] or 0:>6.0f} / {seq['p95_delay'] or 0:<6.0f}",
        f"{'  5-point share change caught within 5,000 messages':<52} "
        f"{seq['within_5000']:>14.0%}  >= 95%",
        "",
        f"{'CPU seconds per check, 1,000-row window (median of 5)':<52} "
        f"{timing_['cpu_seconds_1000_median']:>14.3f}  <= 0.5",
        f"{'  per-feature tests only':<52} {timing_['cpu_seconds_1000_feature_tests_only']:>14.3f}",
        f"{'  fit on the reference (26k rows), CPU seconds':<52} "
        f"{timing_['fit_cpu_seconds']:>14.2f}",
        f"{'estimated vs realised accuracy, MAE (2000-row windows)':<52} "
        f"{est['accuracy_mae'] * 100:>12.2f}pp  <= 2pp",
        f"{'  95th percentile / share within 2pp':<52} "
        f"{est['accuracy_p95_error'] * 100:>6.2f}pp / {est['accuracy_within_2pp']:<4.0%}",
    ]
    if "monitor_overhead" in results:
        lines += overhead_lines(results["monitor_overhead"])
    return "\n".join(lines)


def overhead_lines(overhead: dict) -> list[str]:
    median = overhead["median_rows_per_s"]
    checks = overhead["drift_checks_per_run"]
    thread, process = (statistics.median(checks[m]) for m in ("thread", "process"))
    return [
        f"{'predictor rows/s: no monitor (median of ' + str(overhead['repeats']) + ')':<52} "
        f"{median['none']:>14,.0f}",
        f"{'  monitor thread in-process: rows/s, ratio':<52} "
        f"{median['thread']:>7,.0f} {overhead['ratio_thread']:>6.0%}  (demo only)",
        f"{'  monitor process (streamfit monitor): rows/s, ratio':<52} "
        f"{median['process']:>7,.0f} {overhead['ratio_process']:>6.0%}  >= 90%",
        f"{'  drift checks per run (thread / process)':<52} {thread:>6.0f} / {process:<5.0f}",
        f"{'  monitor process CPU, share of one core (median)':<52} "
        f"{statistics.median(overhead.get('monitor_process_cpu_share') or [math.nan]):>14.0%}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
