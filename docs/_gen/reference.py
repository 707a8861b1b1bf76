"""Reference pages generated from the code, so they cannot drift from it: the CLI (from the
argument parser), the settings (from the settings object and its source comments), the metrics
(from the metrics module) and the alert rules (from deploy/prometheus/alerts.yml)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from streamfit import cli, config
from streamfit.ops import metrics

ROOT = Path(__file__).resolve().parents[2]


def cell(text: object) -> str:
    """``text`` fit for one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    return f"`{text}`" if str(text) else ""


# ---------------------------------------------------------------------------------------- CLI


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, nested ones as ``contract infer``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub
                for child, text, grandchild in _subcommands(sub):
                    yield f"{name} {child}", text, grandchild


def _option_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(
        action, argparse._HelpAction | argparse._SubParsersAction
    ):
        return None
    formatter = parser._get_formatter()
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += " " + formatter._format_args(
                action, formatter._get_default_metavar_for_optional(action)
            )
    else:
        name = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
    text = formatter._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action.choices, dict):
        text += " Choices: " + ", ".join(code(c) for c in action.choices) + "."
    default = action.default
    shown = (
        ""
        if default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0
        else code(default)
    )
    if action.required:
        shown = "required"
    return f"| {code(name)} | {cell(text)} | {shown} |"


def cli_page() -> str:
    parser = cli.build_parser()
    lines = [
        "# Command line",
        "",
        "Generated from the argument parser (`streamfit.cli.build_parser`) when the site is built:"
        " every command and option `streamfit` accepts, with its help text. `streamfit COMMAND"
        " --help` prints the same. Options that set a [setting](settings.md) override its"
        " `STREAMFIT_*` variable and the TOML file. A user error is one line on stderr and exit"
        " code 2.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    commands = list(_subcommands(parser))
    for name, text, _ in commands:
        anchor = name.replace(" ", "-")
        lines.append(f"| [`streamfit {name}`](#{anchor}) | {cell(text)} |")
    for name, text, sub in commands:
        anchor = name.replace(" ", "-")
        lines += ["", f"## `streamfit {name}` {{#{anchor}}}", ""]
        if text:
            lines += [text[0].upper() + text[1:] + ".", ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        for group in sub._action_groups:
            rows = [row for a in group._group_actions if (row := _option_row(sub, a))]
            if not rows:
                continue
            title = group.title or "options"
            lines += [
                f"**{title}**",
                "",
                "| option | meaning | default |",
                "|---|---|---|",
                *rows,
                "",
            ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- settings


def _field_comments() -> dict[str, str]:
    """Each Settings field's comment in config.py: the block just above it and its inline one.
    A one-line block of up to three words (``# Predictor``) is a section heading, not a note."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    tree = ast.parse(source)
    settings = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    notes: dict[str, str] = {}
    for node in settings.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        line = lines[node.lineno - 1]
        inline = line.split("  # ", 1)[1].strip() if "  # " in line else ""
        block: list[str] = []
        at = node.lineno - 2
        while at >= 0 and lines[at].strip().startswith("#"):
            block.insert(0, lines[at].strip().lstrip("#").strip())
            at -= 1
        if len(block) == 1 and len(block[0].rstrip(".:").split()) <= 3:
            block = []
        notes[node.target.id] = " ".join([*block, inline]).strip()
    return notes


def _flags(parser: argparse.ArgumentParser) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Setting name -> ``--flag (command, ...)`` for each flag that sets it; and -> its help."""
    found: dict[str, dict[str, set[str]]] = {}
    helps: dict[str, str] = {}
    for name, _, sub in _subcommands(parser):
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                flag = action.option_strings[-1]
                found.setdefault(action.dest, {}).setdefault(flag, set()).add(name)
                if action.help:
                    helps.setdefault(action.dest, sub._get_formatter()._expand_help(action))
    shown = {
        dest: [
            f"`{flag}` ({'most commands' if len(commands) > 6 else ', '.join(sorted(commands))})"
            for flag, commands in flags.items()
        ]
        for dest, flags in found.items()
    }
    return shown, helps


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    return item.default_factory()  # type: ignore[misc]


def settings_page() -> str:
    notes = _field_comments()
    flags, helps = _flags(cli.build_parser())
    lines = [
        "# Settings",
        "",
        "Generated from `streamfit.config.Settings` when the site is built: every setting, its"
        " default, and where to set it. "
        + (config.__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "- **TOML**: `--config FILE` (or `STREAMFIT_CONFIG`); keys at the top level or under"
        " a `[streamfit]` table, e.g. `retrain_every = 100`.",
        "- **Environment**: `STREAMFIT_` and the name in capitals, e.g."
        " `STREAMFIT_RETRAIN_EVERY=100`; a mapping as `key=value,key=value`.",
        "- **Command line**: the flags listed (see [Command line](cli.md)).",
        "",
        "Bad values stop the command with one line naming the setting (exit code 2).",
        "",
        "| setting (TOML key) | environment | default | flags | meaning |",
        "|---|---|---|---|---|",
    ]
    for item in dataclasses.fields(config.Settings):
        if not item.init:
            continue
        default = _default(item)
        if isinstance(default, config.Topics):
            for topic in dataclasses.fields(default):
                lines.append(
                    f"| `topics.{topic.name}` | — | `{getattr(default, topic.name)}` | | "
                    f"the name of the `{topic.name}` topic (TOML: a `[streamfit.topics]` table) |"
                )
            continue
        shown = "—" if default in ("", {}) else code(default)
        env = code(config.ENV_PREFIX + item.name.upper())
        flag = "<br>".join(flags.get(item.name, ()))
        lines.append(
            f"| `{item.name}` | {env} | {shown} | {flag} | "
            f"{cell(notes.get(item.name) or helps.get(item.name, ''))} |"
        )
    lines += [
        "",
        "Empty defaults are derived: the tracking URI is `sqlite:///<data_dir>/mlflow.db`, the"
        " observation store `sqlite:///<data_dir>/observations.db`, the trial store the"
        " observation database when that is a server, else `sqlite:///<data_dir>/trials.db`;"
        " the compiled-model cache `<data_dir>/compiled-models`; the instance id the host name"
        " and a digest of the data directory.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ metrics


def _metric_classes() -> list[type[metrics.ServiceMetrics]]:
    return [
        value
        for value in vars(metrics).values()
        if isinstance(value, type)
        and issubclass(value, metrics.ServiceMetrics)
        and value is not metrics.ServiceMetrics
        and not value.__name__.startswith("Null")
    ]


def metric_rows(kind: type[metrics.ServiceMetrics]) -> list[tuple[str, str, str, str]]:
    """(name as exported, type, labels, help) of every metric a service's metrics object
    registers, read from its registry."""
    instance = kind()
    rows = []
    for collector in list(instance.registry._collector_to_names):
        labels = ", ".join(getattr(collector, "_labelnames", ()) or ())
        for family in collector.describe() or collector.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            rows.append((name, family.type, labels, family.documentation))
    return sorted(rows)


def metrics_page() -> str:
    lines = [
        "# Metrics",
        "",
        "Generated from `streamfit.ops.metrics` when the site is built: every metric each service"
        " exports on `GET /metrics`, read from the service's own registry (besides the"
        " `process_*` and `python_*` metrics of its process). Names follow Prometheus"
        " conventions: `streamfit_` then the service, `_total` on counters, seconds, ratios"
        " 0..1, `_timestamp_seconds` for Unix times. The demo serves the four services' metrics"
        " on one endpoint (no name is shared). See [Prometheus and Grafana]"
        "(../how-to/prometheus-grafana.md) for the ports and probes.",
        "",
    ]
    for kind in _metric_classes():
        lines += [
            f"## {kind.service}",
            "",
            "| metric | type | labels | meaning |",
            "|---|---|---|---|",
        ]
        for name, kind_, labels, text in metric_rows(kind):
            lines.append(
                f"| `{name}` | {kind_} | {code(labels) if labels else ''} | {cell(text)} |"
            )
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- alerts


def alerts_page() -> str:
    path = ROOT / "deploy" / "prometheus" / "alerts.yml"
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    lines = [
        "# Alert rules",
        "",
        "Generated from `deploy/prometheus/alerts.yml` when the site is built. Every rule has"
        " firing and quiet cases in `deploy/prometheus/alerts_test.yml`, run by"
        " `promtool test rules` in the test suite, and every metric a rule names is one the"
        " services export (`tests/deploy/test_names.py`). The thresholds are starting points"
        " for the Adult model (accuracy about 0.87): tune them to yours.",
        "",
        "| alert | severity | for | summary |",
        "|---|---|---|---|",
    ]
    for rule in rules:
        summary = rule.get("annotations", {}).get("summary", "")
        lines.append(
            f"| [`{rule['alert']}`](#{rule['alert'].lower()}) | "
            f"{rule.get('labels', {}).get('severity', '')}"
            f" | {rule.get('for', '')} | {cell(summary)} |"
        )
    for rule in rules:
        description = rule.get("annotations", {}).get("description", "")
        lines += [
            "",
            f"## {rule['alert']}",
            "",
            cell(description),
            "",
            "```promql",
            rule["expr"].strip(),
            "```",
        ]
    lines += ["", "## The file", "", "```yaml", path.read_text().rstrip(), "```", ""]
    return "\n".join(lines)
