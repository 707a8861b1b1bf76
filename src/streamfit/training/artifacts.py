"""Figures and tables a round leaves in MLflow: optimisation history, parallel coordinates,
ROC and calibration curves, and the round's leaderboard CSV (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .space import Categorical, IntStep, LogUniform, SearchSpace
from .trials import format_leaderboard


def write_round_artifacts(
    directory: Path,
    trials: Sequence[Mapping[str, Any]],
    space: SearchSpace,
    labels: np.ndarray,
    probabilities: np.ndarray,
) -> list[Path]:
    """Write every artifact of a round into ``directory``; return the files."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    files = [
        _history(directory / "optimization_history.png", trials, plt),
        _parallel(directory / "parallel_coordinates.png", trials, space, plt),
        _roc(directory / "roc_curve.png", labels, probabilities, plt),
        _calibration(directory / "calibration_curve.png", labels, probabilities, plt),
    ]
    ranked = sorted(
        (t for t in trials if t["status"] == "ok"), key=lambda t: (t["cv_loss"], t["number"])
    )
    leaderboard = directory / "leaderboard.csv"
    leaderboard.write_text(format_leaderboard(ranked, "csv"))
    files.append(leaderboard)
    return files


def _history(path: Path, trials: Sequence[Mapping[str, Any]], plt: Any) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    best, best_line = math.inf, []
    for t in trials:
        loss = t["cv_loss"]
        if t["status"] == "ok" and loss is not None:
            best = min(best, loss)
        best_line.append(best if math.isfinite(best) else np.nan)
    styles = {
        ("ok", True): ("tab:orange", "warm start"),
        ("ok", False): ("tab:blue", "search"),
        ("pruned", False): ("lightgray", "pruned"),
        ("pruned", True): ("lightgray", "pruned"),
    }
    seen: set[str] = set()
    for t in trials:
        if t["cv_loss"] is None or t["status"] == "failed":
            continue
        color, label = styles[(t["status"], bool(t["warm"]))]
        ax.scatter(
            t["number"], t["cv_loss"], color=color, s=18, label=None if label in seen else label
        )
        seen.add(label)
    ax.plot(range(len(trials)), best_line, color="black", lw=1.2, label="best so far")
    ok = [t["cv_loss"] for t in trials if t["status"] == "ok" and t["cv_loss"] is not None]
    if ok:  # zoom on the interesting band, not on one disastrous trial
        low, high = min(ok), float(np.quantile(ok, 0.9))
        ax.set_ylim(low - 0.002, high + 0.002 + 0.1 * (high - low))
    ax.set_xlabel("trial")
    ax.set_ylabel("CV log loss (3-fold)")
    ax.set_title("Optimisation history")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parallel(
    path: Path, trials: Sequence[Mapping[str, Any]], space: SearchSpace, plt: Any
) -> Path:
    """Each completed trial is a line across the dimensions (scaled to [0, 1], log where the
    space is log-uniform), coloured by CV log loss: dark = good."""
    done = [t for t in trials if t["status"] == "ok" and t["cv_loss"] is not None]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = space.names
    if done:
        losses = np.array([t["cv_loss"] for t in done])
        order = np.argsort(-losses)  # draw the best last, on top
        cmap = plt.get_cmap("viridis")
        span = max(float(np.quantile(losses, 0.9) - losses.min()), 1e-9)
        for i in order:
            ys = [_unit(space[n], done[i]["params"][n]) for n in names]
            shade = min((losses[i] - losses.min()) / span, 1.0)
            ax.plot(range(len(names)), ys, color=cmap(shade), alpha=0.7, lw=1)
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(losses.min(), losses.min() + span))
        fig.colorbar(sm, ax=ax, label="CV log loss")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title("Parallel coordinates of the trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _unit(dimension: Any, value: Any) -> float:
    if isinstance(dimension, Categorical):
        return dimension.choices.index(dimension.snap(value)) / (len(dimension.choices) - 1)
    if isinstance(dimension, IntStep):
        return dimension.index(value) / dimension.n_steps
    if isinstance(dimension, LogUniform):
        lo, hi = math.log(dimension.low), math.log(dimension.high)
        return (math.log(value) - lo) / (hi - lo)
    return (value - dimension.low) / (dimension.high - dimension.low)


def _roc(path: Path, labels: np.ndarray, probabilities: np.ndarray, plt: Any) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, probabilities)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, probabilities):.4f}")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the test rows")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _calibration(path: Path, labels: np.ndarray, probabilities: np.ndarray, plt: Any) -> Path:
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8, label="perfect")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency of the positive class")
    ax.set_title("Calibration on the test rows")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
