"""Benchmark figures generated from ``benchmarks/results/*.json`` when the site is built: tables,
and PNG plots where a person would rather look (throughput ratios, latency, soak memory over
time, drift detection rates). Each says which machine and load its run had."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

# The machine and load of runs whose file does not record them, from the notes taken when they
# ran (every run was on the project's 2-core x86_64 machine, broker and services on it too).
RUN_NOTES = {
    "predictor.json": "2026-11-27 21:33-21:40, quiet (load average 0.8-1.7)",
    "predictor-scaleout.json": "otherwise idle (load 0.1 at the start)",
    "predictor-latency-rerun.json": "the latency part rerun 3 minutes after predictor.json, quiet",
    "predictor-recorder.json": "shared, load 1.5-5",
    "predictor-recorder-before.json": "shared, load 1.5-5 (the recorder before batched writes)",
    "predictor-recorder-rerun.json": "busier than predictor-recorder.json",
    "runtimes.json": "shared with other engineers' builds and tests: read the ratios",
    "challenger.json": "shared by four engineers (the simulation); see shadow_machine_load",
    "challenger-quick.json": "shared, loaded (a quick run)",
    "training.json": "one LightGBM thread, 2 cores shared with other work: wall times are bounds",
    "training-quick.json": "shared (a quick run)",
    "training-workers.json": "2 cores shared with four engineers' work, load average 6-10",
    "chaos.json": "a fresh-clone CI run with nothing else running",
    "soak.json": "load average 10-28",
    "soak-2m-after.json": "2026-11-27 19:10-19:34, a CI run beside it, load up to 15",
    "soak-2m-final.json": "2026-11-27 20:53-21:26, load 1-3",
    "soak-2m-mapped.json": "2026-11-28 00:18-00:50, quiet but for the run itself",
    "soak-600k-trim.json": "2026-11-27 22:21-22:33, shared",
    "soak-promotions.json": "shared with other engineers' test runs",
    "soak-promotions-window.json": "shared with other engineers' test runs",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def _loads(value: Any) -> str:
    return "/".join(f"{x:.1f}" for x in value) if isinstance(value, list) else str(value)


def machine(name: str) -> str:
    """One line: which machine and load the run of ``name`` had."""
    data = load(name)
    parts: list[str] = []
    found = data.get("machine")
    if isinstance(found, str):
        parts.append(found)
    elif isinstance(found, dict):
        cores = found.get("cpus") or found.get("cores")
        parts.append(f"{cores} cores" if cores else "")
        for key in ("loadavg", "load_average_start"):
            if key in found:
                parts.append(f"load average at the start {_loads(found[key])}")
        if "load_average_end" in found:
            parts.append(f"at the end {_loads(found['load_average_end'])}")
        if found.get("note"):
            parts.append(found["note"])
        if found.get("environment"):
            parts.append(" ".join(f"{k}={v}" for k, v in found["environment"].items()))
    for key, value in data.items():
        if key.endswith("machine_load") and isinstance(value, str):
            parts.append(value)
    if name in RUN_NOTES:
        parts.append(RUN_NOTES[name])
    text = "; ".join(p for p in parts if p)
    return f"*Machine and load ({name}): {text or 'not recorded'}.*"


def table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def scalars(name: str) -> str:
    """Every top-level figure of a results file, in a collapsed block."""
    data = load(name)
    rows = [
        [f"`{k}`", v]
        for k, v in data.items()
        if isinstance(v, int | float | str) and k != "machine"
    ]
    body = table(["key", "value"], rows).replace("\n", "\n    ")
    return f'??? info "Every top-level figure in `{name}`"\n\n    {body}\n'


class Figures:
    """Collects the PNG plots a page refers to; ``write`` saves them into the built site."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}

    def plot(
        self, path: str, draw: Callable[[Any], None], alt: str, size: tuple[float, float] = (7, 3.6)
    ) -> str:
        figure, axes = plt.subplots(figsize=size, dpi=110)
        draw(axes)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        self.images[path] = buffer.getvalue()
        return f"![{alt}]({Path(path).name})"


# ---------------------------------------------------------------------------------- predictor


def predictor(figures: Figures) -> str:
    data = load("predictor.json")
    ratios = [
        ("e2e_vs_noop", "at-least-once / no-op loop", 0.8),
        ("e2e_exactly_once_vs_noop", "exactly-once / no-op loop", 0.7),
        ("e2e_vs_noop_same_commits", "at-least-once / no-op, same commits", None),
        ("e2e_exactly_once_vs_noop_same_commits", "exactly-once / no-op, same commits", None),
        ("p99_at_1k_vs_noop", "p99 at 1,000/s / no-op loop's (lower is better)", 1.5),
        ("processes_2_vs_1", "2 processes / 1", None),
    ]
    present = [(k, label, t) for k, label, t in ratios if k in data]

    def bars(axes: Any) -> None:
        axes.barh(
            [label for _, label, _ in present], [data[k] for k, _, _ in present], color="#3f6ea6"
        )
        for i, (_, _, target) in enumerate(present):
            if target is not None:
                axes.plot([target, target], [i - 0.4, i + 0.4], color="#c0392b", lw=2)
        axes.axvline(1.0, color="grey", lw=0.8)
        axes.invert_yaxis()
        axes.set_xlabel("ratio, side by side in one run (red: the target)")

    latency_keys = [("1,000/s", "1k"), ("10,000/s", "10k")]

    def latency(axes: Any) -> None:
        width = 0.35
        for i, (label, key) in enumerate(latency_keys):
            values = [data.get(f"p{p}_ms_at_{key}") for p in (50, 95, 99)]
            axes.bar([x + i * width for x in range(3)], values, width, label=label)
        axes.set_xticks([x + width / 2 for x in range(3)], ["p50", "p95", "p99"])
        axes.set_ylabel("ms, request's Kafka timestamp to answer")
        axes.legend()

    runtimes = data.get("runtime_us_per_row", {})
    names = [n for n, v in runtimes.items() if isinstance(v, dict)]

    def runtime_plot(axes: Any) -> None:
        for name in names:
            batches = sorted(runtimes[name], key=int)
            axes.plot(
                [int(b) for b in batches],
                [runtimes[name][b] for b in batches],
                marker="o",
                label=name,
            )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("batch size")
        axes.set_ylabel("µs per row")
        axes.legend()

    throughput = [
        ["no-op loop (plain confluent-kafka)", data.get("noop_per_s"), 1.0],
        ["predictor, at-least-once", data.get("e2e_kafka_per_s"), data.get("e2e_vs_noop")],
        [
            "predictor, exactly-once",
            data.get("e2e_exactly_once_per_s"),
            data.get("e2e_exactly_once_vs_noop"),
        ],
        [
            "recorder (observations/s)",
            data.get("recorder_per_s"),
            data.get("recorder_vs_predictor"),
        ],
    ]
    parts = [
        machine("predictor.json"),
        "",
        figures.plot(
            "benchmarks/predictor-ratios.png",
            bars,
            "Throughput and latency ratios against the no-op loop",
        ),
        "",
        table(["what answers 200,000 waiting requests", "per second", "ratio"], throughput),
        "",
        figures.plot(
            "benchmarks/predictor-latency.png",
            latency,
            "Latency percentiles at 1,000 and 10,000 requests/s",
        ),
        "",
        table(
            ["in process", "rows/s"],
            [
                [
                    "served model (compiled), decode → predict → encode",
                    data.get("inprocess_rows_per_s"),
                ],
                ["the same on LightGBM's own predict", data.get("inprocess_lightgbm_rows_per_s")],
                ["per-message DataFrame baseline", data.get("baseline_rows_per_s")],
                ["speed-up against the baseline (x)", data.get("speedup_vs_baseline")],
            ],
        ),
        "",
    ]
    if names:
        parts += [
            figures.plot(
                "benchmarks/predictor-runtimes.png",
                runtime_plot,
                "Model runtimes: µs per row by batch size",
            ),
            "",
        ]
    parts.append(scalars("predictor.json"))
    for other in sorted(RESULTS.glob("predictor-*.json")):
        parts += ["", f"### `{other.name}`", "", machine(other.name), "", scalars(other.name)]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------- soak


def soak(figures: Figures) -> str:
    parts: list[str] = []
    for path in sorted(RESULTS.glob("soak*.json")):
        data = json.loads(path.read_text())
        tenths = data.get("rss_mb_per_10pct") or []
        services = list(tenths[0]) if tenths else []
        parts += [f"### `{path.name}`", "", machine(path.name), ""]
        summary = [
            ["requests sent / answered", f"{data.get('sent', 0):,} / {data.get('answered', 0):,}"],
            ["lost / duplicates", f"{data.get('lost')} / {data.get('duplicates')}"],
            ["rate (target, per s)", data.get("rate_target_per_s")],
            [
                "retrains requested / rounds completed",
                f"{data.get('retrains_requested')} / {data.get('rounds_completed')}",
            ],
        ]
        parts += [table(["", "figure"], summary), ""]
        if tenths:

            def draw(
                axes: Any, tenths: list[dict[str, float]] = tenths, services: list[str] = services
            ) -> None:
                x = [10 * (i + 1) for i in range(len(tenths))]
                for service in services:
                    axes.plot(x, [t[service] for t in tenths], marker="o", label=service)
                axes.set_xlabel("% of the stream")
                axes.set_ylabel("RSS (MB)")
                axes.set_ylim(bottom=0)
                axes.legend()

            image = f"benchmarks/{path.stem}-rss.png"
            parts += [
                figures.plot(image, draw, f"RSS per service over the stream ({path.name})"),
                "",
            ]
            growth = data.get("rss_growth_pct_warm_to_end", {})
            parts += [
                table(
                    ["RSS (MB)", *[f"{10 * (i + 1)} %" for i in range(len(tenths))], "10 % → end"],
                    [[s, *[t[s] for t in tenths], f"{growth.get(s, 0):+.1f} %"] for s in services],
                ),
                "",
            ]
        if data.get("throughput_per_10pct"):
            parts += [
                "Throughput per tenth of the stream (answered/s): "
                + ", ".join(f"{v:,.0f}" for v in data["throughput_per_10pct"]),
                "",
            ]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ drift


def drift(figures: Figures) -> str:
    data = load("drift.json")
    windows = data["windows"]
    scenarios = list(windows)
    detectors = [
        ("streamfit", "streamfit"),
        ("nannyml_univariate", "NannyML univariate"),
        ("nannyml_domain_classifier", "NannyML domain classifier"),
    ]

    def draw(axes: Any) -> None:
        width = 0.27
        for i, (key, label) in enumerate(detectors):
            axes.bar(
                [x + i * width for x in range(len(scenarios))],
                [100 * windows[s][key]["alarm_rate"] for s in scenarios],
                width,
                label=label,
            )
        axes.set_xticks(
            [x + width for x in range(len(scenarios))],
            [s.replace("_", " ") for s in scenarios],
            fontsize=8,
        )
        axes.axhline(95, color="#c0392b", lw=1, ls="--")
        axes.axhline(1, color="#c0392b", lw=1, ls=":")
        axes.set_ylabel("% of 1,000-row windows alarmed")
        axes.legend(fontsize=8)

    rows = [
        [
            s.replace("_", " "),
            windows[s].get("shifted_feature") or "—",
            f"{100 * windows[s]['streamfit']['alarm_rate']:.0f} %",
            "—"
            if windows[s]["streamfit"].get("ranked_first") is None
            else f"{100 * windows[s]['streamfit']['ranked_first']:.0f} %",
            f"{100 * windows[s]['nannyml_univariate']['alarm_rate']:.0f} %",
            f"{100 * windows[s]['nannyml_domain_classifier']['alarm_rate']:.0f} %",
        ]
        for s in scenarios
    ]
    sequential = data.get("sequential", {})
    seq_rows = [
        [
            "undrifted checks / checks that alarmed",
            f"{sequential.get('undrifted_checks')} / {sequential.get('false_alarm_checks')}",
        ],
        ["measured ERT (checks per false alarm; target ≥ 100)", sequential.get("measured_ert")],
        [
            "5-point fall of a share: median / p95 delay (messages)",
            f"{sequential.get('median_delay')} / {sequential.get('p95_delay')}",
        ],
        ["caught within 5,000 messages", f"{100 * sequential.get('within_5000', 0):.0f} %"],
    ]
    estimation = data.get("estimation", {})
    overhead = data.get("monitor_overhead", {})
    timing = data.get("timing", {})
    other_rows = [
        [
            "CPU per check of a 1,000-row window, median / max (s)",
            f"{timing.get('cpu_seconds_1000_median', 0):.2f} / "
            f"{timing.get('cpu_seconds_1000_max', 0):.2f}",
        ],
        [
            "estimated vs realised accuracy, MAE / p95 (pp)",
            f"{100 * estimation.get('accuracy_mae', 0):.2f} / "
            f"{100 * estimation.get('accuracy_p95_error', 0):.2f}",
        ],
        [
            "predictor throughput with the monitor as a process / thread",
            f"{100 * overhead.get('ratio_process', 0):.0f} % / "
            f"{100 * overhead.get('ratio_thread', 0):.0f} %",
        ],
    ]
    return "\n".join(
        [
            machine("drift.json"),
            "",
            figures.plot(
                "benchmarks/drift-detection.png", draw, "Drift alarm rates per scenario", (7.5, 3.8)
            ),
            "",
            table(
                [
                    "1,000-row windows",
                    "shifted feature",
                    "streamfit alarms",
                    "shifted feature ranked first",
                    "NannyML univariate",
                    "NannyML domain classifier",
                ],
                rows,
            ),
            "",
            table(["sequential monitor", "figure"], seq_rows),
            "",
            table(["cost and estimation", "figure"], other_rows),
            "",
        ]
    )


# ------------------------------------------------------------------------------- challenger


def challenger(figures: Figures) -> str:
    data = load("challenger.json")
    sim = data.get("simulation", {})
    rows = [
        [
            "equal models: false promotions (nominal ≤ 5 %)",
            f"{100 * sim.get('equal_false_promotion_rate', 0):.1f} %",
        ],
        [
            "the same, a naive z-test looked at every 50 pairs",
            f"{100 * sim.get('equal_naive_peeking_promotion_rate', 0):.1f} %",
        ],
        [
            "clearly worse: rejected / median pairs",
            f"{100 * sim.get('worse_rejection_rate', 0):.0f} % / "
            f"{sim.get('worse_median_pairs_to_reject')}",
        ],
        [
            "slightly worse: rejected / median pairs",
            f"{100 * sim.get('slightly_worse_rejection_rate', 0):.1f} % / "
            f"{sim.get('slightly_worse_median_pairs_to_reject')}",
        ],
        [
            "clearly better: promoted / median pairs",
            f"{100 * sim.get('better_promotion_rate', 0):.0f} % / "
            f"{sim.get('better_median_pairs_to_promote')}",
        ],
    ]
    shadow = data.get("shadow", {})
    shadow_rows = [
        [
            "µs per row, champion alone / with a shadowed challenger",
            f"{shadow.get('us_per_row_champion_only')} / {shadow.get('us_per_row_with_shadow')}",
        ],
        ["`shadow_cost_ratio` (wall clock; goal ≤ 1.3)", shadow.get("shadow_cost_ratio")],
        ["`shadow_cpu_ratio`", shadow.get("shadow_cpu_ratio")],
    ]

    def draw(axes: Any) -> None:
        labels = [
            "false promotion,\nsequential",
            "false promotion,\nnaive peeking",
            "clearly worse\nrejected",
            "slightly worse\nrejected",
            "clearly better\npromoted",
        ]
        keys = [
            "equal_false_promotion_rate",
            "equal_naive_peeking_promotion_rate",
            "worse_rejection_rate",
            "slightly_worse_rejection_rate",
            "better_promotion_rate",
        ]
        axes.bar(
            labels,
            [100 * sim.get(k, 0) for k in keys],
            color=["#3f6ea6", "#c0392b", "#3f6ea6", "#3f6ea6", "#3f6ea6"],
        )
        axes.axhline(5, color="grey", ls="--", lw=1)
        axes.set_ylabel(f"% of {sim.get('runs')} runs")
        axes.tick_params(axis="x", labelsize=8)

    return "\n".join(
        [
            machine("challenger.json"),
            "",
            figures.plot(
                "benchmarks/challenger-simulation.png",
                draw,
                "Live challenger test: error and decision rates",
            ),
            "",
            table(
                [
                    f"simulation, {sim.get('runs')} runs per case, α = {sim.get('alpha')}, "
                    f"{sim.get('min_pairs')}..{sim.get('max_pairs')} pairs",
                    "result",
                ],
                rows,
            ),
            "",
            *_challenger_defaults(data.get("defaults")),
            table(["shadow scoring in process", "figure"], shadow_rows),
            "",
        ]
    )


def _challenger_defaults(defaults: dict[str, Any] | None) -> list[str]:
    if not defaults:
        return []
    names = {
        "one_point_better": "one accuracy point better",
        "one_point_worse": "one accuracy point worse",
        "clearly_worse": "clearly worse",
        "equal": "equal",
    }
    rows = [
        [
            f"{label}: {defaults[key]['wanted']}",
            f"{100 * defaults[key]['rate']:.1f} %",
            f"{100 * defaults[key]['wrong_rate']:.1f} %",
            defaults[key]["median_pairs"],
        ]
        for key, label in names.items()
        if key in defaults
    ]
    header = (
        f"at the shipped settings ({defaults['runs']} runs per case, α = {defaults['alpha']}, "
        f"{defaults['min_pairs']}..{defaults['max_pairs']} pairs)"
    )
    return [table([header, "rate", "the opposite decision", "median pairs"], rows), ""]


# --------------------------------------------------------------------------------- runtimes


def runtimes(figures: Figures) -> str:
    data = load("runtimes.json")
    parts = [machine("runtimes.json"), ""]
    for model, info in data["models"].items():
        found = info["runtimes"]
        batches = [str(b) for b in data["batches"]]

        def draw(axes: Any, found: dict[str, Any] = found, batches: list[str] = batches) -> None:
            for name, runtime in found.items():
                axes.plot(
                    [int(b) for b in batches],
                    [runtime["us_per_row"][b] for b in batches],
                    marker="o",
                    label=name,
                )
            axes.set_xscale("log")
            axes.set_yscale("log")
            axes.set_xlabel("batch size")
            axes.set_ylabel("µs per row")
            axes.legend(fontsize=7)

        rows = [
            [
                name,
                r.get("build_s"),
                f"{r.get('max_abs_diff'):.0e}",
                *[f"{r['us_per_row'][b]} ({r['speedup_vs_lightgbm'][b]}x)" for b in batches],
            ]
            for name, r in found.items()
        ]
        parts += [
            f"### {model} model ({info['trees']} trees)",
            "",
            figures.plot(
                f"benchmarks/runtimes-{model}.png", draw, f"Runtimes on the {model} model"
            ),
            "",
            table(["runtime", "build (s)", "max abs Δp", *[f"batch {b}" for b in batches]], rows),
            "",
        ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------- training


def training(figures: Figures) -> str:
    data = load("training.json")
    init = data["init"]
    runs = data.get("warm", {}).get("runs", [])

    def draw(axes: Any) -> None:
        for i, run in enumerate(runs):
            color = f"C{i}"
            axes.plot(
                range(1, len(run["warm_curve"]) + 1),
                run["warm_curve"],
                color=color,
                label=f"seed {run['seed']} warm",
            )
            axes.plot(range(1, len(run["cold_curve"]) + 1), run["cold_curve"], color=color, ls="--")
        axes.set_xlabel("trial")
        axes.set_ylabel("best CV log loss so far")
        axes.set_ylim(top=min(0.2875, axes.get_ylim()[1]))
        axes.legend(fontsize=7, title="solid warm, dashed cold", title_fontsize=7)

    speed = [
        [
            s["optimizer"],
            s["trials"],
            round(s["wall_s"]),
            s.get("pruned", 0),
            round(s["cv_loss"], 4),
            round(s["auc"], 4),
        ]
        for s in data.get("speed", [])
    ]
    warm = [
        [
            r["seed"],
            r["warm_trials"] or "not in budget",
            r["cold_trials"],
            round(r["warm_best"], 4),
            round(r["cold_best"], 4),
        ]
        for r in runs
    ]
    parts = [
        machine("training.json"),
        "",
        table(
            ["initial champion", "figure"],
            [
                ["budget, optimiser", f"{init['budget']}, {init['optimizer']}"],
                [
                    "adult.test AUC / log loss / accuracy",
                    f"{init['auc']:.4f} / {init['log_loss']:.4f} / {init['accuracy']:.4f}",
                ],
                [
                    "CV log loss, boosting rounds in CV",
                    f"{init['cv_loss']:.4f}, {init['best_iteration']}",
                ],
                ["wall (s)", round(init["wall_s"])],
            ],
        ),
        "",
    ]
    if runs:
        parts += [
            figures.plot(
                "benchmarks/training-warm-start.png",
                draw,
                "Warm against cold rounds: best CV log loss by trial",
            ),
            "",
            table(
                [
                    "seed",
                    "warm: trials to target",
                    "cold: trials to target",
                    "warm best",
                    "cold best",
                ],
                warm,
            ),
            "",
        ]
    parts += [table(["optimiser", "trials", "wall (s)", "pruned", "CV log loss", "AUC"], speed), ""]
    if "mlflow" in data:
        m = data["mlflow"]
        parts += [
            f"MLflow's share of a {m['trials']}-trial round: {100 * m['overhead_ratio']:.1f} % "
            f"the first in a process, {100 * m.get('steady_overhead_ratio', 0):.1f} % later; "
            f"importing MLflow {m.get('mlflow_startup_s', 0):.1f} s once.",
            "",
        ]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ chaos


def chaos(figures: Figures) -> str:
    data = load("chaos.json")
    rows = [
        [
            f["fault"],
            f["runs"],
            f["requests"],
            f["lost"],
            f["duplicates"],
            f.get("recovery_s_mean"),
            f.get("recovery_s_max"),
        ]
        for f in data["faults"]
    ]
    recovered = [f for f in data["faults"] if isinstance(f.get("recovery_s_mean"), int | float)]

    def draw(axes: Any) -> None:
        axes.barh(
            [f["fault"] for f in recovered],
            [f["recovery_s_mean"] for f in recovered],
            color="#3f6ea6",
        )
        axes.invert_yaxis()
        axes.tick_params(axis="y", labelsize=7)
        axes.set_xlabel("recovery, s (mean over runs)")

    return "\n".join(
        [
            machine("chaos.json")
            + f" Suite: {data.get('suite_s')} s, {data.get('seeds')} seeds per kill.",
            "",
            table(
                ["fault", "runs", "requests", "lost", "duplicates", "recovery mean (s)", "max (s)"],
                rows,
            ),
            "",
            figures.plot(
                "benchmarks/chaos-recovery.png", draw, "Recovery time per fault", (7.5, 4)
            ),
            "",
        ]
    )


# ---------------------------------------------------------------------------------- your data


def _newest(*names: str) -> str | None:
    """The first of ``names`` that exists in the results (the full run before the quick one)."""
    return next((n for n in names if (RESULTS / n).exists()), None)


def your_data(figures: Figures) -> str:
    """Issue 22: the predictor against the no-op loop per data set; the initial model against
    LightGBM's defaults and FLAML on the same budget."""
    parts: list[str] = []
    name = _newest("predictor-data.json", "predictor-data-quick.json")
    if name:
        data = load(name)
        sets = data["sets"]
        rows = [
            [
                set_name,
                s["task"],
                s["e2e_vs_noop"],
                s["e2e_per_s"],
                s["noop_per_s"],
                f"{s['native_batches']}/{s['batches']}",
                s.get("served_by", "—"),
                s["note"],
            ]
            for set_name, s in sets.items()
        ]

        def bars(axes: Any) -> None:
            names = list(sets)
            axes.barh(names, [sets[n]["e2e_vs_noop"] or 0 for n in names], color="#3f6ea6")
            axes.axvline(0.8, color="#b03a2e", linestyle="--", label="target 0.8")
            axes.invert_yaxis()
            axes.set_xlabel("predictor / no-op loop, at-least-once (median over rounds)")
            axes.legend(loc="lower right")

        parts += [
            f"### Predictor (`{name}`)",
            "",
            machine(name)
            + f" {data['requests_per_run']:,} waiting requests per run, {data['rounds']} rounds.",
            "",
            table(
                [
                    "data set",
                    "task",
                    "e2e_vs_noop",
                    "predictions/s",
                    "no-op/s",
                    "native batches",
                    "served by",
                    "data",
                ],
                rows,
            ),
            "",
            figures.plot("benchmarks/your-data-e2e.png", bars, "e2e_vs_noop per data set"),
            "",
        ]
    name = _newest("training-data.json", "training-data-quick.json")
    if name:
        data = load(name)
        rows = [
            [
                set_name,
                s["task"],
                s["metric"],
                s["streamfit"],
                s["lightgbm_defaults"],
                f"{s['flaml']:.3g} ({s['best_estimator']})",
                s["vs_lightgbm_defaults"],
                s["vs_flaml"],
                s["flaml_budget_s"],
                s["note"] or f"{s['train_rows']:,} training rows",
            ]
            for set_name, s in data["sets"].items()
            if "error" not in s
        ]
        parts += [
            f"### Training (`{name}`)",
            "",
            machine(name),
            "",
            table(
                [
                    "data set",
                    "task",
                    "metric",
                    "streamfit",
                    "LightGBM defaults",
                    "FLAML (best learner)",
                    "vs defaults",
                    "vs FLAML",
                    "budget (s)",
                    "data",
                ],
                rows,
            ),
            "",
        ]
    return "\n".join(parts + model_size(figures))


def model_size(figures: Figures) -> list[str]:
    """The predictor serving the first k trees of one model, and the regression grid."""
    parts: list[str] = []
    if (RESULTS / "model-size.json").exists():
        data = load("model-size.json")
        sets = data["sets"]
        rows = [
            [
                set_name,
                trees,
                size["e2e_vs_noop"],
                size["e2e_per_s"],
                size["test_metric"],
                f"{size['test_metric'] / s['sizes'][str(s['trees'])]['test_metric']:.3f}",
            ]
            for set_name, s in sets.items()
            for trees, size in s["sizes"].items()
        ]

        def lines(axes: Any) -> None:
            for set_name, s in sets.items():
                trees = [int(k) for k in s["sizes"]]
                axes.plot(
                    trees, [v["e2e_vs_noop"] for v in s["sizes"].values()], "o-", label=set_name
                )
            axes.axhline(0.8, color="#b03a2e", linestyle="--", label="target 0.8")
            axes.set_xlabel("trees served (the first k of the initial model)")
            axes.set_ylabel("predictor / no-op loop")
            axes.legend(loc="upper right")

        parts += [
            "### The model's size (`model-size.json`)",
            "",
            machine("model-size.json")
            + f" {data['requests_per_run']:,} waiting requests per run, {data['rounds']} rounds.",
            "",
            table(
                ["data set", "trees", "e2e_vs_noop", "predictions/s", "test loss", "vs all trees"],
                rows,
            ),
            "",
            figures.plot("benchmarks/model-size.png", lines, "e2e_vs_noop by trees served"),
            "",
        ]
    if (RESULTS / "model-size-grid.json").exists():
        data = load("model-size-grid.json")
        rows = [
            [
                trees,
                f"{best['learning_rate']}, {best['leaves']}",
                f"{best['rmse']:.4f}",
                best["us_per_row"],
                best["initial_model_us_per_row"],
            ]
            for trees, best in data["best"].items()
        ]
        headers = ["trees", "best rate, leaves", "test RMSE", "µs/row", "initial model's µs/row"]
        parts += [
            "### Smaller regression models (`model-size-grid.json`)",
            "",
            machine("model-size-grid.json"),
            "",
            table(headers, rows),
            "",
        ]
    return parts


SECTIONS: dict[str, Callable[[Figures], str]] = {
    "your_data": your_data,
    "predictor": predictor,
    "soak": soak,
    "drift": drift,
    "challenger": challenger,
    "runtimes": runtimes,
    "training": training,
    "chaos": chaos,
}


def index() -> str:
    """Every results file, with the machine and load of its run."""
    rows = [
        [f"`{p.name}`", machine(p.name).split("): ", 1)[1].rstrip(".*")]
        for p in sorted(RESULTS.glob("*.json"))
    ]
    return table(["results file", "machine and load"], rows)
