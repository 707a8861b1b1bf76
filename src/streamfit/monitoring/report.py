"""The result of scoring one window: event payload, text table, per-feature chart, HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..messages import drift_event


@dataclass
class FeatureDrift:
    """One feature's verdict. ``p_value`` is corrected for testing every feature."""

    name: str
    kind: str
    test: str
    score: float  # MLBox per-feature drift score, 0..1
    statistic: float  # the test's own statistic (KS D, chi-squared)
    p_value: float
    psi: float  # effect size, reported beside the verdict (a floor on it is opt-in)
    drifted: bool
    raw_p_value: float = math.nan  # before the correction
    reason: str = ""  # the verdict in words
    bins: list[str] = field(default_factory=list)  # for the report's overlaid distributions
    reference_shares: list[float] = field(default_factory=list)
    current_shares: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    """Whole-window drift (domain classifier) plus the per-feature tests."""

    window_end: int | str | None
    drift: float
    drifted: bool
    features: dict[str, FeatureDrift]
    auc: float = math.nan
    p_value: float = math.nan
    classifier_drifted: bool = False
    fold_aucs: list[float] = field(default_factory=list)
    importance: dict[str, float] = field(default_factory=dict)
    n_reference: int = 0
    n_current: int = 0
    alpha: float = 0.01
    seconds: float = 0.0
    correction: str = "holm"
    # The sequential layer (monitor only): per-feature CUSUM statistics after this check, the
    # threshold, and the features whose CUSUM crossed it at this check.
    cusum: dict[str, float] = field(default_factory=dict)
    cusum_threshold: float = math.nan
    sequential_features: list[str] = field(default_factory=list)

    output: dict[str, Any] | None = None  # output drift (monitor only, see output.py)
    labels: dict[str, Any] | None = None  # label share and realised calibration

    def add_output(self, output: dict[str, Any] | None, labels: dict[str, Any] | None) -> None:
        """Fold the output and label tests into the verdict."""
        self.output, self.labels = output, labels
        if any(layer and layer["drifted"] for layer in (output, labels)):
            self.drifted = True

    def add_sequential(self, alarmed: list[str], cusum: Any) -> None:
        """Fold one CUSUM update into the verdict (statistics are read before a reset)."""
        self.sequential_features = list(alarmed)
        self.cusum_threshold = float(cusum.threshold)
        self.cusum = {n: float(v) for n, v in cusum.last.items()}
        if alarmed:
            self.drifted = True

    def ranking(self) -> list[str]:
        """Features from most to least drifting: smaller uncorrected p-value first (the evidence),
        then the larger effect (PSI) among p-values that underflow alike."""
        return sorted(
            self.features,
            key=lambda n: (
                _finite(self.features[n].raw_p_value, _finite(self.features[n].p_value, 1.0)),
                -_finite(self.features[n].psi, 0.0),
            ),
        )

    @property
    def drifted_features(self) -> list[str]:
        return [name for name in self.ranking() if self.features[name].drifted]

    def to_event(self) -> dict[str, Any]:
        """The drift event (schema: :func:`streamfit.messages.drift_event`), NaN as null."""
        return drift_event(
            window_end=self.window_end,
            drift=_json_float(self.drift),
            drifted=bool(self.drifted),
            features={
                name: {
                    "score": _json_float(f.score),
                    "p_value": _json_float(f.p_value),
                    "psi": _json_float(f.psi),
                    "drifted": bool(f.drifted),
                }
                for name, f in self.features.items()
            },
            sequential={
                "drifted": bool(self.sequential_features),
                "features": list(self.sequential_features),
                "threshold": _json_float(self.cusum_threshold),
                "cusum": {n: _json_float(v) for n, v in self.cusum.items()},
            },
            output=_scalars(self.output),
            labels=_scalars(self.labels),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_event(), option=orjson.OPT_INDENT_2)

    def details(self) -> dict[str, Any]:
        """Everything, for logs and artifacts (not the event)."""
        return orjson.loads(orjson.dumps(asdict(self)))

    def table(self) -> str:
        """Per-feature table and the verdict, as printed by ``streamfit drift``."""
        lines = [
            f"{'feature':<16} {'kind':<11} {'test':<5} {'score':>6} {'statistic':>10} "
            f"{'p_value':>9} {'psi':>6}  drifted",
        ]
        for name in self.ranking():
            f = self.features[name]
            lines.append(
                f"{name:<16} {f.kind:<11} {f.test:<5} {f.score:6.3f} {f.statistic:10.4g} "
                f"{f.p_value:9.2g} {f.psi:6.3f}  {'YES' if f.drifted else 'no'}"
            )
        verdict = "DRIFT" if self.drifted else "no drift"
        lines.append(
            f"overall: {verdict} (classifier drift {self.drift:.3f}, AUC {self.auc:.3f}, "
            f"p={self.p_value:.2g}; {len(self.drifted_features)} of {len(self.features)} features "
            f"drifted; {self.n_current} rows vs {self.n_reference} reference rows)"
        )
        return "\n".join(lines)

    def chart_png(self, path: Path | None = None) -> bytes:
        """Horizontal bar chart of the per-feature scores, drifted features in red."""
        import matplotlib

        matplotlib.use("Agg")  # no display in services; must precede pyplot
        from matplotlib.figure import Figure

        names = self.ranking()[::-1]
        scores = [_finite(self.features[n].score, 0.0) for n in names]
        colours = ["#c0392b" if self.features[n].drifted else "#7f8c8d" for n in names]
        figure = Figure(figsize=(7, 0.35 * len(names) + 1.2))
        axes = figure.subplots()
        axes.barh(names, scores, color=colours)
        axes.set_xlim(0, max(1.0, *scores) if scores else 1.0)
        axes.set_xlabel("per-feature drift score (0 = alike, 1 = separable)")
        title = "DRIFT" if self.drifted else "no drift"
        axes.set_title(f"window {self.window_end}: {title}, overall drift {self.drift:.3f}")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        data = buffer.getvalue()
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def to_html(self) -> str:
        image = base64.b64encode(self.chart_png()).decode()
        rows = "".join(
            "<tr{cls}><td>{n}</td><td>{k}</td><td>{t}</td><td>{s:.3f}</td><td>{st:.4g}</td>"
            "<td>{p:.2g}</td><td>{psi:.3f}</td><td>{d}</td></tr>".format(
                cls=' class="drifted"' if f.drifted else "",
                n=html.escape(f.name),
                k=f.kind,
                t=f.test,
                s=f.score,
                st=f.statistic,
                p=f.p_value,
                psi=f.psi,
                d="yes" if f.drifted else "no",
            )
            for f in (self.features[n] for n in self.ranking())
        )
        verdict = "DRIFT" if self.drifted else "no drift"
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamfit drift report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
tr.drifted{{background:#fadbd8}}</style></head><body>
<h1>Drift report: {verdict}</h1>
<p>Classifier drift {self.drift:.3f} (mean fold AUC {self.auc:.3f}, p = {self.p_value:.2g});
{len(self.drifted_features)} of {len(self.features)} features drifted;
{self.n_current} rows against {self.n_reference} reference rows; alpha {self.alpha}.</p>
<img alt="per-feature drift scores" src="data:image/png;base64,{image}">
<table><tr><th>feature</th><th>kind</th><th>test</th><th>score</th><th>statistic</th>
<th>p-value (corrected)</th><th>PSI</th><th>drifted</th></tr>{rows}</table>
</body></html>
"""


def _scalars(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """The event keeps a layer's numbers and verdict, not the chart's share lists."""
    if values is None:
        return None
    return {
        k: (_json_float(v) if isinstance(v, float) else v)
        for k, v in values.items()
        if not isinstance(v, list)
    }


def _finite(value: float, default: float) -> float:
    return default if value is None or math.isnan(value) else float(value)


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
