"""Domain-classifier drift (MLBox's score): how well can a model tell window rows from reference?

Rows are labelled 0 (reference) / 1 (window); a classifier is cross-validated with stratified
folds; with S the per-fold ROC AUCs, drift = (max(mean(S), 1 - mean(S)) - 0.5) * 2, near 0 when
the sets look alike and near 1 when they are easy to tell apart.

Threshold: within a fold the model never saw the test rows, so when both sets come from one
distribution its test scores are independent of the test labels, and the fold AUC is a
Mann–Whitney statistic with a known null distribution. The per-fold z-scores are combined
(Stouffer) into a one-sided p-value: a calibrated alarm at no extra fitting cost. A permutation null
(refits on shuffled labels) is available for checking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from scipy import stats
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

CLASSIFIERS = ("lightgbm", "random_forest")


def drift_score(fold_aucs: Sequence[float]) -> float:
    """MLBox's drift from per-fold AUCs: (max(mean, 1 - mean) - 0.5) * 2."""
    mean = float(np.mean(fold_aucs))
    return (max(mean, 1.0 - mean) - 0.5) * 2.0


def auc_with_z(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC of ``scores`` for ``y`` and its Mann–Whitney z-score (tie-corrected) under H0."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan"), 0.0
    ranks = stats.rankdata(scores)
    u = ranks[y].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n0
    _, ties = np.unique(scores, return_counts=True)
    variance = n1 * n0 / 12.0 * ((n + 1) - np.sum(ties**3 - ties) / (n * (n - 1)))
    z = (u - n1 * n0 / 2.0) / np.sqrt(variance) if variance > 0 else 0.0
    return float(u / (n1 * n0)), float(z)


@dataclass
class ClassifierResult:
    drift: float
    auc: float
    p_value: float
    fold_aucs: list[float]
    importance: dict[str, float] = field(default_factory=dict)


class DomainClassifier:
    """Cross-validated reference-vs-window classifier.

    LightGBM is the default: histogram-based, it fits 10k rows x 14 columns in tens of
    milliseconds on one thread (a 50-tree random forest takes several times longer), handles
    categorical codes and missing values natively, is already a dependency (it is the served
    model), and its split gains explain which features separate the sets. ``random_forest`` is
    MLBox's own choice (50 trees, depth 5, 5 rows per leaf) on label-encoded categories.
    """

    def __init__(
        self,
        classifier: str = "lightgbm",
        n_folds: int = 3,
        n_estimators: int = 50,
        n_permutations: int = 0,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        if n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {n_folds}")
        if n_estimators < 1:
            raise ValueError(f"n_estimators must be at least 1, got {n_estimators}")
        if n_permutations < 0:
            raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
        self.classifier = classifier
        self.n_folds = n_folds
        self.n_estimators = n_estimators
        self.n_permutations = n_permutations
        self.seed = seed
        self.n_jobs = n_jobs

    def score(
        self, x: np.ndarray, y: np.ndarray, names: Sequence[str], categorical: Sequence[int]
    ) -> ClassifierResult:
        """Score rows ``x`` labelled ``y`` (0 reference, 1 window); ``categorical`` are indices."""
        fold_aucs, fold_z, gains = self._cross_validate(x, y, categorical)
        if self.n_permutations:
            rng = np.random.default_rng(self.seed)
            observed = float(np.mean(fold_aucs))
            null = [
                float(np.mean(self._cross_validate(x, rng.permutation(y), categorical)[0]))
                for _ in range(self.n_permutations)
            ]
            p_value = (1 + sum(a >= observed for a in null)) / (1 + self.n_permutations)
        else:
            # One-sided: a classifier that really separates the sets ranks window rows higher
            # (AUC > 0.5); AUC below 0.5 is noise or rows shared by both sets.
            stouffer = float(np.sum(fold_z) / np.sqrt(len(fold_z)))
            p_value = float(stats.norm.sf(stouffer))
        total = float(gains.sum()) or 1.0
        return ClassifierResult(
            drift=drift_score(fold_aucs),
            auc=float(np.mean(fold_aucs)),
            p_value=p_value,
            fold_aucs=[float(a) for a in fold_aucs],
            importance={n: float(g / total) for n, g in zip(names, gains, strict=True)},
        )

    def _cross_validate(
        self, x: np.ndarray, y: np.ndarray, categorical: Sequence[int]
    ) -> tuple[list[float], list[float], np.ndarray]:
        folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.seed)
        aucs, zs, gains = [], [], np.zeros(x.shape[1])
        for train, test in folds.split(x, y):
            proba, gain = self._fit_predict(x[train], y[train], x[test], categorical)
            auc, z = auc_with_z(y[test], proba)
            aucs.append(auc)
            zs.append(z)
            gains += gain
        return aucs, zs, gains

    def _fit_predict(
        self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, categorical: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.classifier == "random_forest":
            forest = RandomForestClassifier(
                n_estimators=self.n_estimators,
                max_depth=5,
                min_samples_leaf=5,
                random_state=self.seed,
                n_jobs=self.n_jobs,
            ).fit(x, y)
            return forest.predict_proba(x_test)[:, 1], forest.feature_importances_
        params = {
            "objective": "binary",
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_data_in_leaf": 20,
            "verbose": -1,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
        }
        data = lgb.Dataset(x, y, categorical_feature=list(categorical), free_raw_data=True)
        booster = lgb.train(params, data, num_boost_round=self.n_estimators)
        return booster.predict(x_test), booster.feature_importance("gain")


def binned_feature_scores(
    codes: np.ndarray, y: np.ndarray, n_bins: Sequence[int], n_folds: int, seed: int
) -> list[float]:
    """MLBox's per-feature drift score, one feature at a time, with a histogram classifier.

    For one feature the best possible classifier scores a row by the likelihood ratio of its
    value between window and reference; on the reference bins that is a count ratio per bin,
    learnt on the training folds and ranked on the test fold. This is what a depth-limited tree
    per feature (MLBox) approximates, at the cost of a few ``bincount`` calls instead of fits.
    """
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(codes, y))
    scores = []
    for j, bins in enumerate(n_bins):
        column = codes[:, j]
        aucs = []
        for train, test in folds:
            pos = np.bincount(column[train][y[train] == 1], minlength=bins) + 0.5
            neg = np.bincount(column[train][y[train] == 0], minlength=bins) + 0.5
            ratio = (pos / pos.sum()) / (neg / neg.sum())
            aucs.append(_grouped_auc(ratio, column[test], y[test], bins))
        scores.append(drift_score(aucs))
    return scores


def _grouped_auc(score_per_bin: np.ndarray, codes: np.ndarray, y: np.ndarray, bins: int) -> float:
    """AUC of per-bin scores from counts: bins with equal scores count as ties."""
    levels, group = np.unique(score_per_bin, return_inverse=True)
    pos = np.bincount(group[codes[y == 1]], minlength=levels.size).astype(float)
    neg = np.bincount(group[codes[y == 0]], minlength=levels.size).astype(float)
    if pos.sum() == 0 or neg.sum() == 0:
        return 0.5
    below = np.cumsum(neg) - neg  # negatives with a strictly lower score
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))
