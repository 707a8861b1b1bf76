"""The live challenger test, measured: its error rates by simulation, and what shadow scoring costs.

    python benchmarks/challenger.py [--quick] [--only simulation,defaults,shadow]

**simulation** (no model, no broker): requests with a true probability ``p ~ Beta(2, 5)`` and a
label drawn from it; each model answers ``p`` blurred on the logit scale by Gaussian noise of its
own. Two models with the *same* noise are equally good (exchangeable), so any ``promote`` is a
false promotion: its rate over many runs must stay at or below ``alpha``. Beside it, the same
data judged the naive way (a z-test on the mean difference, looked at every 50 pairs) shows why
an always-valid test is needed. A clearly worse challenger (more noise) gives the median number
of labelled pairs to its rejection.

**defaults**: the same simulation at the shipped settings (``live_alpha``, ``live_min_pairs``,
``live_max_pairs``): how often a challenger one accuracy point better is promoted, one point
worse or clearly worse rejected, an equal one kept, and after how many labelled pairs.

**shadow** (a real model, in process): the predictor's per-row cost on the same request batches
with and without a shadow model (both compiled when a C compiler is there), interleaved so both
see the same machine: ``shadow_cost_ratio`` (goal: at most 1.3).

Results go to ``benchmarks/results/challenger.json`` (``challenger-quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamfit.challengers.comparison import LiveComparison, log_loss_differences

RESULTS = Path(__file__).parent / "results"


# -- simulation --------------------------------------------------------------------------------
def _answers(truth: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    logit = np.log(truth / (1 - truth)) + rng.normal(0.0, noise, truth.size)
    return 1 / (1 + np.exp(-logit))


def _run(
    rng: np.random.Generator, n: int, champion_noise: float, challenger_noise: float, **test: Any
) -> tuple[str, int, bool]:
    """One stream: (decision, pairs it took, whether the naive peeking z-test promoted)."""
    truth = rng.beta(2, 5, n)
    labels = (rng.random(n) < truth).astype(np.int8)
    champion = _answers(truth, champion_noise, rng)
    challenger = _answers(truth, challenger_noise, rng)
    comparison = LiveComparison(max_pairs=n, **test)
    evidence = comparison.update(champion, challenger, labels)
    return evidence.decision, evidence.pairs, _naive_promotes(champion, challenger, labels, test)


def _naive_promotes(
    champion: np.ndarray, challenger: np.ndarray, labels: np.ndarray, test: dict[str, Any]
) -> bool:
    """A fixed-sample z-test (two-sided, level alpha) checked every 50 pairs: promoted if the
    challenger ever looked significantly better."""
    d = log_loss_differences(champion, challenger, labels, test.get("epsilon", 0.01))
    counts = np.arange(1, d.size + 1)
    means = np.cumsum(d) / counts
    variances = np.maximum(np.cumsum(d * d) / counts - means**2, 1e-300)
    z = means / np.sqrt(variances / counts)
    looks = np.arange(test.get("min_pairs", 100) - 1, d.size, 50)
    from statistics import NormalDist

    critical = NormalDist().inv_cdf(1 - test.get("alpha", 0.05) / 2)
    return bool(np.any(z[looks] > critical))


def part_simulation(runs: int, max_pairs: int, alpha: float, min_pairs: int) -> dict[str, Any]:
    rng = np.random.default_rng(20261127)
    test = {"alpha": alpha, "min_pairs": min_pairs}
    started = time.perf_counter()
    equal = [_run(rng, max_pairs, 0.5, 0.5, **test) for _ in range(runs)]
    worse = [_run(rng, max_pairs, 0.3, 1.5, **test) for _ in range(runs)]
    slightly = [_run(rng, max_pairs, 0.3, 0.8, **test) for _ in range(runs)]
    better = [_run(rng, max_pairs, 1.5, 0.3, **test) for _ in range(runs)]

    def share(outcomes: list[tuple[str, int, bool]], decision: str) -> float:
        return round(sum(o[0] == decision for o in outcomes) / len(outcomes), 4)

    def median_pairs(outcomes: list[tuple[str, int, bool]], decision: str) -> int | None:
        pairs = [o[1] for o in outcomes if o[0] == decision]
        return int(np.median(pairs)) if pairs else None

    return {
        "runs": runs,
        "alpha": alpha,
        "min_pairs": min_pairs,
        "max_pairs": max_pairs,
        "epsilon": 0.01,
        "equal_false_promotion_rate": share(equal, "promote"),
        "equal_false_rejection_rate": share(equal, "reject"),
        "equal_kept_at_max_rate": share(equal, "keep"),
        "equal_naive_peeking_promotion_rate": round(sum(o[2] for o in equal) / runs, 4),
        "worse_rejection_rate": share(worse, "reject"),
        "worse_median_pairs_to_reject": median_pairs(worse, "reject"),
        "slightly_worse_rejection_rate": share(slightly, "reject"),
        "slightly_worse_median_pairs_to_reject": median_pairs(slightly, "reject"),
        "better_promotion_rate": share(better, "promote"),
        "better_median_pairs_to_promote": median_pairs(better, "promote"),
        "noise": {"equal": [0.5, 0.5], "worse": [0.3, 1.5], "slightly": [0.3, 0.8]},
        "wall_s": round(time.perf_counter() - started, 1),
    }


# Models one accuracy point apart (0.72 vs 0.73, log loss 0.556 vs 0.542 on this simulation's
# data), and a clearly worse one (accuracy 0.65, log loss 0.71).
_ONE_POINT, _CLEARLY_WORSE = (0.5, 0.3), (0.3, 1.5)


def part_defaults(runs: int) -> dict[str, Any]:
    """The decisions the shipped settings take: a challenger one point better promoted, one
    point worse or clearly worse rejected, an equal one kept (rates over ``runs`` streams)."""
    from streamfit.config import Settings

    defaults = Settings()
    test = {
        "alpha": defaults.live_alpha,
        "epsilon": defaults.live_epsilon,
        "min_pairs": defaults.live_min_pairs,
    }
    n = defaults.live_max_pairs
    rng = np.random.default_rng(20261206)
    started = time.perf_counter()
    cases = {
        "one_point_better": (_ONE_POINT[0], _ONE_POINT[1], "promote"),
        "one_point_worse": (_ONE_POINT[1], _ONE_POINT[0], "reject"),
        "clearly_worse": (_CLEARLY_WORSE[0], _CLEARLY_WORSE[1], "reject"),
        "equal": (0.5, 0.5, "keep"),
    }
    results: dict[str, Any] = {"runs": runs, **test, "max_pairs": n}
    for name, (champion, challenger, wanted) in cases.items():
        outcomes = [_run(rng, n, champion, challenger, **test) for _ in range(runs)]
        decided = [pairs for decision, pairs, _ in outcomes if decision == wanted]
        results[name] = {
            "wanted": wanted,
            "rate": round(len(decided) / runs, 4),
            "median_pairs": int(np.median(decided)) if decided else None,
            "wrong_rate": round(sum(d not in (wanted, "keep") for d, _, _ in outcomes) / runs, 4),
        }
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


# -- shadow cost ---------------------------------------------------------------------------------
def part_shadow(rows: int, batch: int) -> dict[str, Any]:
    from shadow_cost import measure_shadow_cost  # benchmarks/shadow_cost.py: needs a model

    return measure_shadow_cost(rows, batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and rows")
    parser.add_argument(
        "--only", default="simulation,defaults,shadow", help="parts, comma-separated"
    )
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "quick": args.quick,
    }
    if "simulation" in parts:
        runs = 300 if args.quick else 2000
        print(f"simulation: {runs} runs of each case, up to 2000 pairs...", flush=True)
        results["simulation"] = part_simulation(runs, 2000, alpha=0.05, min_pairs=100)
    if "defaults" in parts:
        runs = 100 if args.quick else 500
        print(f"defaults: {runs} runs of each case at the shipped settings...", flush=True)
        results["defaults"] = part_defaults(runs)
    if "shadow" in parts:
        print("shadow scoring cost (in process, a real model)...", flush=True)
        sys.path.insert(0, str(Path(__file__).parent))
        rows = 20_000 if args.quick else 100_000
        results["shadow"] = part_shadow(rows, batch=1000)
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("challenger-quick.json" if args.quick else "challenger.json")
    # --only one part keeps the other part's last results in the file
    kept = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(kept | results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
