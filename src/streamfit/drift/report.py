"""The result of scoring one window: event payload, text table, per-feature chart, HTML page."""

from __future__ import annotations

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
    # The sequential layer (monitor only): per-feature evidence of the change scan after this
    # check (z scale), the threshold, and the features whose evidence crossed it at this check.
    sequential: dict[str, float] = field(default_factory=dict)
    sequential_threshold: float = math.nan
    sequential_features: list[str] = field(default_factory=list)

    output: dict[str, Any] | None = None  # output drift (monitor only, see output.py)
    labels: dict[str, Any] | None = None  # label share and realised calibration

    def add_output(self, output: dict[str, Any] | None, labels: dict[str, Any] | None) -> None:
        """Fold the output and label tests into the verdict."""
        self.output, self.labels = output, labels
        if any(layer and layer["drifted"] for layer in (output, labels)):
            self.drifted = True

    def add_sequential(self, alarmed: list[str], scan: Any) -> None:
        """Fold one update of the sequential scan into the verdict (its evidence as it stood
        before an alarm's reset)."""
        self.sequential_features = list(alarmed)
        self.sequential_threshold = float(scan.threshold)
        self.sequential = {n: float(v) for n, v in scan.last.items()}
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
                "threshold": _json_float(self.sequential_threshold),
                "evidence": {n: _json_float(v) for n, v in self.sequential.items()},
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
        """A self-contained page (inline SVG, no script, no network): the overall verdict first,
        then per feature the reference and current distributions overlaid, the test, the
        corrected p-value, the effect size and the reason for the verdict in words; the same for
        the model's output and the labels when the monitor tested them."""
        return _page(self)

    @property
    def verdict_lines(self) -> list[str]:
        """Why the window is (or is not) drifted, one sentence per layer."""
        lines = []
        drifted = self.drifted_features
        if drifted:
            lines.append(f"Per-feature tests: {', '.join(drifted)} shifted.")
        else:
            lines.append(f"Per-feature tests: none of the {len(self.features)} features shifted.")
        if not math.isnan(self.p_value):
            lines.append(
                f"Domain classifier: AUC {self.auc:.3f}, drift score {self.drift:.3f}, corrected "
                f"p = {self.p_value:.2g}: "
                + ("the window is separable from the reference." if self.classifier_drifted
                   else "no evidence the window is separable from the reference.")
            )  # fmt: skip
        if self.sequential:
            threshold = self.sequential_threshold
            lines.append(
                "Sequential (change scan across checks): "
                + (f"{', '.join(self.sequential_features)} crossed the threshold "
                   f"{threshold:.2f}." if self.sequential_features
                   else f"no feature's evidence reached the threshold {threshold:.2f}.")
            )  # fmt: skip
        if self.output is not None:
            lines.append(f"Model output: {_output_reason(self.output)}")
        if self.labels is not None:
            lines.append(f"Labels: {_labels_reason(self.labels)}")
        return lines


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:60em;color:#222}
.verdict{padding:.6em 1em;border-radius:6px;font-size:1.4em;font-weight:bold}
.verdict.drift{background:#fadbd8;color:#922}.verdict.calm{background:#d5f5e3;color:#185}
section{border-top:1px solid #ccc;margin-top:1.5em;padding-top:.5em}
section.drifted h2{color:#c0392b}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}
.reason{font-style:italic}.legend span{display:inline-block;width:1em;height:.8em;margin:0 .3em}
svg text{font-size:11px;font-family:sans-serif}"""
_REFERENCE_COLOUR, _CURRENT_COLOUR = "#95a5a6", "#2e86c1"


def _page(report: DriftReport) -> str:
    e = html.escape
    drift_class = "drift" if report.drifted else "calm"
    verdict = "DRIFT" if report.drifted else "No drift"
    summary = "".join(f"<li>{e(line)}</li>" for line in report.verdict_lines)
    sections = [_feature_section(report, report.features[n]) for n in report.ranking()]
    if report.output is not None:
        sections.append(_output_section(report.output))
    if report.labels is not None:
        sections.append(_labels_section(report.labels))
    legend = (
        f'<p class="legend"><span style="background:{_REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{_CURRENT_COLOUR}"></span>this window</p>'
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>streamfit drift report</title>
<style>{_STYLE}</style></head><body>
<h1>Drift report</h1>
<p id="verdict" class="verdict {drift_class}">{verdict}</p>
<ul id="summary">{summary}</ul>
<p>Window ending at {e(str(report.window_end))}: {report.n_current} rows against
{report.n_reference} reference rows. Tests are corrected together ({e(report.correction)}) so an
undrifted window raises any alarm with probability at most alpha = {report.alpha:g}.</p>
{legend}
{"".join(sections)}
</body></html>
"""


def _feature_section(report: DriftReport, f: FeatureDrift) -> str:
    e = html.escape
    status = "shifted" if f.drifted else "no shift"
    rows = (
        f"<tr><th>test</th><th>statistic</th><th>p-value</th><th>corrected p-value</th>"
        f"<th>effect size (PSI)</th><th>classifier score</th></tr>"
        f"<tr><td>{e(_TEST_NAMES.get(f.test, f.test))}</td><td>{f.statistic:.4g}</td>"
        f"<td>{f.raw_p_value:.2g}</td><td>{f.p_value:.2g}</td><td>{f.psi:.3f}</td>"
        f"<td>{f.score:.3f}</td></tr>"
    )
    chart = _bars_svg(f.bins, f.reference_shares, f.current_shares)
    return f"""<section class="feature{" drifted" if f.drifted else ""}" id="feature-{e(f.name)}"
data-feature="{e(f.name)}"><h2>{e(f.name)}: {status}</h2>
<p class="reason">{e(f.reason)}</p><table>{rows}</table>{chart}</section>"""


def _output_section(output: dict[str, Any]) -> str:
    if output.get("task", "binary") != "binary":
        return _task_section("output", "Model output", output, _output_reason(output))
    labels = [f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10)]
    chart = _bars_svg(labels, output["reference_shares"], output["shares"])
    return f"""<section class="output{" drifted" if output["drifted"] else ""}" id="output">
<h2>Model output: {"shifted" if output["drifted"] else "no shift"}</h2>
<p class="reason">{html.escape(_output_reason(output))}</p>
<table><tr><th>test</th><th>KS D</th><th>p-value</th><th>mean probability</th>
<th>reference mean</th></tr><tr><td>Kolmogorov-Smirnov</td><td>{output["statistic"]:.4g}</td>
<td>{output["p_value"]:.2g}</td><td>{output["mean"]:.3f}</td>
<td>{output["reference_mean"]:.3f}</td></tr></table>{chart}</section>"""


def _labels_section(labels: dict[str, Any]) -> str:
    if labels.get("task", "binary") != "binary":
        return _task_section("labels", "Labels", labels, _labels_reason(labels))
    chart = _bars_svg(
        ["positive", "negative"],
        [labels["reference_rate"], 1 - labels["reference_rate"]],
        [labels["positive_rate"], 1 - labels["positive_rate"]],
    )
    return f"""<section class="labels{" drifted" if labels["drifted"] else ""}" id="labels">
<h2>Labels: {"shifted" if labels["drifted"] else "no shift"}</h2>
<p class="reason">{html.escape(_labels_reason(labels))}</p>
<table><tr><th>labelled rows</th><th>positive rate</th><th>reference rate</th>
<th>share p-value</th><th>calibration z</th><th>calibration p-value</th><th>ECE</th></tr>
<tr><td>{labels["n"]}</td><td>{labels["positive_rate"]:.3f}</td>
<td>{labels["reference_rate"]:.3f}</td><td>{labels["p_value"]:.2g}</td>
<td>{labels["calibration_z"]:.2f}</td><td>{labels["calibration_p_value"]:.2g}</td>
<td>{labels["calibration_error"]:.3f}</td></tr></table>{chart}</section>"""


def _task_section(kind: str, title: str, layer: dict[str, Any], reason: str) -> str:
    """A multiclass or regression layer: its reason, and its shares per bin when it has any."""
    chart = ""
    if "bins" in layer:
        chart = _bars_svg(list(layer["bins"]), layer["reference_shares"], layer["shares"])
    drifted = layer["drifted"]
    return f"""<section class="{kind}{" drifted" if drifted else ""}" id="{kind}">
<h2>{title}: {"shifted" if drifted else "no shift"}</h2>
<p class="reason">{html.escape(reason)}</p>{chart}</section>"""


def _output_reason(output: dict[str, Any]) -> str:
    word = "shifted" if output["drifted"] else "no evidence of a shift"
    task = output.get("task", "binary")
    if task == "multiclass":
        return (
            f"{word}: predicted class shares {_rounded(output['shares'])} against "
            f"{_rounded(output['reference_shares'])} on the reference, mean confidence "
            f"{output['mean']:.3f} against {output['reference_mean']:.3f} (p = "
            f"{output['p_value']:.2g} over the class and per-class tests, "
            f"{output['n']} predictions)."
        )
    if task == "regression":
        return (
            f"{word}: mean predicted value {output['mean']:.4g} against "
            f"{output['reference_mean']:.4g} on the reference "
            f"(KS p = {output['p_value']:.2g}, {output['n']} predictions)."
        )
    return (
        f"{word}: mean predicted probability {output['mean']:.3f} against "
        f"{output['reference_mean']:.3f} on the reference "
        f"(KS p = {output['p_value']:.2g}, {output['n']} predictions)."
    )


def _labels_reason(labels: dict[str, Any]) -> str:
    word = "shifted" if labels["drifted"] else "no evidence of a shift"
    task = labels.get("task", "binary")
    if task == "multiclass":
        return (
            f"{word}: label shares {_rounded(labels['shares'])} against "
            f"{_rounded(labels['reference_shares'])} (p = {labels['p_value']:.2g}) on "
            f"{labels['n']} labelled rows."
        )
    if task == "regression":
        return (
            f"{word}: mean label {labels['mean']:.4g} against {labels['reference_mean']:.4g} "
            f"(KS p = {labels['p_value']:.2g}); residuals' mean {labels['residual_mean']:.4g} "
            f"against {labels['reference_residual_mean']:.4g} (KS p = "
            f"{labels['residual_p_value']:.2g}) on {labels['n']} labelled rows."
        )
    return (
        f"{word}: positive rate {labels['positive_rate']:.3f} against "
        f"{labels['reference_rate']:.3f} (p = {labels['p_value']:.2g}); "
        "calibrated predictions against outcomes: z = "
        f"{labels['calibration_z']:.2f} (p = {labels['calibration_p_value']:.2g}) on "
        f"{labels['n']} labelled rows."
    )


def _rounded(shares: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in shares) + "]"


_TEST_NAMES = {"ks": "Kolmogorov-Smirnov", "chi2": "chi-squared", "psi": "PSI"}


def _bars_svg(labels: list[str], reference: list[float], current: list[float]) -> str:
    """Horizontal paired bars of reference and current shares per bin, as inline SVG. Bins
    empty on both sides are left out."""
    rows = [
        (label, r, c)
        for label, r, c in zip(labels, reference, current, strict=False)
        if r > 0 or c > 0
    ]
    if not rows:
        return "<p>(no values to chart)</p>"
    top = max(max(r, c) for _, r, c in rows) or 1.0
    label_width, bar_width, row_height = 170, 380, 22
    height = row_height * len(rows) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 60}" '
        f'height="{height}" role="img">'
    ]
    for i, (label, r, c) in enumerate(rows):
        y = i * row_height + 3
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">'
            f"{html.escape(label[:28])}</text>"
            f'<rect x="{label_width}" y="{y}" width="{bar_width * r / top:.1f}" height="9" '
            f'fill="{_REFERENCE_COLOUR}"><title>reference {r:.1%}</title></rect>'
            f'<rect x="{label_width}" y="{y + 9}" width="{bar_width * c / top:.1f}" height="9" '
            f'fill="{_CURRENT_COLOUR}"><title>window {c:.1%}</title></rect>'
            f'<text x="{label_width + bar_width * max(r, c) / top + 4:.1f}" y="{y + 14}">'
            f"{r:.1%} / {c:.1%}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


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
