"""The `streamfit` command line. Thin: parse, build Settings, call one library function."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import (
    GUARANTEES,
    METRICS_PORTS,
    MODEL_RUNTIMES,
    OPTIMIZERS,
    PROMOTIONS,
    ConfigError,
    Settings,
)
from .ops.console import LOG_FORMATS, LOG_LEVELS, Terminal, configure_logging

log = logging.getLogger("streamfit")

# CLI option dest -> Settings field, for the options that map one to one.
_SETTING_OPTIONS = (
    "data_dir",
    "bus",
    "bus_password_file",
    "tracking_uri",
    "experiment",
    "retrain_every",
    "keep_models",
    "max_batch",
    "linger_ms",
    "guarantee",
    "group",
    "instance_id",
    "recorder_group",
    "retain",
    "store",
    "trials",
    "compile_model",
    "model_runtime",
    "max_evals",
    "init_max_evals",
    "optimizer",
    "seed",
    "gate_tolerance",
    "train_threads",
    "train_window",
    "max_boost_rounds",
    "dask_scheduler",
    "request_partitions",
    "drift_window",
    "drift_every",
    "drift_reference_rows",
    "drift_alpha",
    "drift_folds",
    "drift_classifier",
    "performance_window",
    "drop_drifting_features",
    "retrain_on_drift",
    "promotion",
    "live_alpha",
    "live_min_pairs",
    "live_max_pairs",
    "canary_percent",
    "canary_accuracy_floor",
    "metrics_host",
    *METRICS_PORTS.values(),
    "data",
    "data_table",
    "data_query",
    "label",
    "task",
    "contract",
    "id_column",
    "time_column",
    "ignore",
    "categorical",
    "numeric",
    "positive_class",
    "extra_columns",
)


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common settings (flags > STREAMFIT_* env > config file)")
    group.add_argument("--config", type=Path, help="TOML config file ([streamfit] table)")
    group.add_argument("--data-dir", type=Path, help="data directory (default ./streamfit-data)")
    group.add_argument("--bus", help="memory:// (default, in-process) or kafka://host:port")
    group.add_argument(
        "--bus-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Kafka client setting passed through (SASL/TLS...); repeatable",
    )
    group.add_argument(
        "--bus-password-file",
        metavar="PATH",
        help="file holding the SASL password (sasl.password), so none is on the command line",
    )
    group.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite in data dir)")
    group.add_argument("--experiment", help="MLflow experiment name (default streamfit)")
    _logging(group)


def _logging(group: argparse._ActionsContainer, level: str = "INFO", hidden: bool = False) -> None:
    group.add_argument(
        "--log-level",
        default=level,
        type=str.upper,
        choices=LOG_LEVELS,
        help=argparse.SUPPRESS
        if hidden
        else f"streamfit's log level (default {level}); other libraries log from WARNING up",
    )
    group.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help=argparse.SUPPRESS
        if hidden
        else "text (default; progress bars on a terminal) or "
        "json (one JSON object per line, for log shippers)",
    )


def _probes(parser: argparse.ArgumentParser, service: str) -> None:
    default = Settings.__dataclass_fields__[METRICS_PORTS[service]].default
    group = parser.add_argument_group("operations")
    group.add_argument(
        "--metrics-port",
        dest=METRICS_PORTS[service],
        type=int,
        metavar="PORT",
        help=f"serve /metrics, /healthz and /readyz on this port (default {default}; 0: off)",
    )
    group.add_argument(
        "--metrics-host", help="address the metrics endpoint listens on (default 0.0.0.0)"
    )


def _store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="observation store, an SQLAlchemy URL: sqlite:///PATH (default "
        "sqlite:///<data dir>/observations.db) or postgresql+psycopg://USER:PASSWORD@HOST/DB",
    )


def _trials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trials",
        metavar="URL",
        help="trial store, an SQLAlchemy URL (default sqlite:///<data dir>/trials.db); "
        "a PostgreSQL one with --optimizer optuna: trainers share each round's search",
    )


def _training(parser: argparse.ArgumentParser, budget_dest: str) -> None:
    parser.add_argument(
        "--max-evals", dest=budget_dest, type=int, help="hyper-parameter search budget (trials)"
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="search backend (default hyperopt)")
    parser.add_argument("--seed", type=int, help="random seed (default 42)")
    parser.add_argument(
        "--train-threads",
        type=int,
        help="LightGBM threads for training (default 1: leave a core to serving)",
    )
    parser.add_argument(
        "--train-window",
        type=int,
        help="train on at most the newest N labelled observations (default 200000)",
    )
    parser.add_argument(
        "--max-boost-rounds",
        type=int,
        metavar="N",
        help="at most N boosting rounds in a trained model: bounds what a prediction costs "
        "(default 0: as many as improve the cross-validated loss)",
    )
    parser.add_argument(
        "--dask",
        dest="dask_scheduler",
        metavar="ADDRESS",
        help="fit each round's final model on this Dask cluster, tcp://SCHEDULER:8786 "
        "(lightgbm.dask; needs the dask extra); default: in this process",
    )


def _retrain_every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retrain-every",
        type=int,
        help="publish a retrain command every N labelled observations (default 50)",
    )


def _instance_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance-id",
        help="this process's stable name within its consumer group, kept across restarts so "
        "that a replacement takes its partitions at once (default: host name + data "
        "directory); give each process on another host or data directory its own",
    )


def _serving(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-models", type=int, help="model bundles kept on disk (default 2)")
    parser.add_argument("--max-batch", type=int, help="largest micro-batch (default 1000)")
    parser.add_argument(
        "--linger-ms", type=float, help="extra wait to fill a micro-batch (default 5 ms)"
    )
    parser.add_argument("--guarantee", choices=GUARANTEES, help="delivery (default at-least-once)")
    parser.add_argument("--group", help="consumer group of the predictors")
    _instance_id(parser)
    parser.add_argument(
        "--no-compile-model",
        dest="compile_model",
        action="store_false",
        default=None,
        help="serve with LightGBM only; by default a compiled copy of the model (checked "
        "against LightGBM) takes over once built in the background",
    )
    parser.add_argument(
        "--model-runtime",
        choices=MODEL_RUNTIMES,
        help="the compiled copy's runtime (default auto: lleaves, else treelite + tl2cgen)",
    )


def _drift_aware(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drop-drifting-features",
        type=float,
        metavar="THRESHOLD",
        help="leave out features whose drift score (0..1, recent requests vs training data) "
        "reaches THRESHOLD, e.g. 0.6 as MLBox (default 0: keep all)",
    )
    parser.add_argument(
        "--retrain-on-drift",
        action="store_true",
        default=None,
        help="a drift event with drifted=true on the drift topic starts a retrain "
        "(once per champion)",
    )


def _monitoring(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("monitor")
    group.add_argument("--drift-window", type=int, help="recent requests per check (default 1000)")
    group.add_argument("--drift-every", type=int, help="new requests between checks (default 250)")
    group.add_argument(
        "--drift-reference-rows", type=int, help="reference sample size (default 5000)"
    )
    group.add_argument(
        "--drift-alpha", type=float, help="significance after correction (default 0.01)"
    )
    group.add_argument("--drift-folds", type=int, help="domain-classifier CV folds (default 3)")
    group.add_argument(
        "--drift-classifier",
        choices=("lightgbm", "random_forest"),
        help="domain classifier (default lightgbm)",
    )
    group.add_argument(
        "--performance-window",
        type=int,
        help="last W labelled observations for realised metrics (default 1000)",
    )


def _promotion(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("challengers on live traffic")
    group.add_argument(
        "--promotion",
        choices=PROMOTIONS,
        help="offline (default): the holdout gate promotes; shadow: the gate's winner is scored "
        "beside the champion and promoted or rejected on live labels; canary: as shadow, but "
        "the challenger answers --canary-percent %% of requests and is rolled back if worse",
    )
    group.add_argument("--live-alpha", type=float, help="the live test's level (default 0.05)")
    group.add_argument(
        "--live-min-pairs", type=int, help="labelled pairs before any decision (default 50)"
    )
    group.add_argument(
        "--live-max-pairs",
        type=int,
        help="labelled pairs after which the champion stays (default 200)",
    )
    group.add_argument(
        "--canary-percent",
        type=int,
        help="canary mode: %% of requests (a stable hash of request_id) the challenger answers "
        "(default 10)",
    )
    group.add_argument(
        "--canary-accuracy-floor",
        type=float,
        help="canary mode: roll back before labels if the challenger's estimated accuracy on "
        "its answers falls below this (default 0.6)",
    )


def _data(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "your data (default: the bundled example, UCI Adult; after `init --data`, the data "
        "directory remembers it)"
    )
    group.add_argument(
        "--data", metavar="SOURCE", help="a CSV or Parquet file, or an SQLAlchemy URL"
    )
    query = group.add_mutually_exclusive_group()
    query.add_argument("--table", dest="data_table", help="with a database URL: this table")
    query.add_argument("--query", dest="data_query", help="with a database URL: this SQL query")
    group.add_argument("--label", metavar="COLUMN", help="the column to predict")
    group.add_argument(
        "--task",
        choices=("auto", "binary", "multiclass", "regression"),
        help="default auto: from the label's values",
    )
    group.add_argument(
        "--contract",
        metavar="FILE",
        help="train on this (edited) contract instead of inferring one (`streamfit contract "
        "infer` writes one)",
    )
    _column_roles(group, default=None)


def _column_roles(group: argparse._ActionsContainer, default: list[str] | None) -> None:
    group.add_argument(
        "--positive-class", metavar="VALUE", help="binary: the class a probability is about"
    )
    for option, what in (
        ("--categorical", "read these columns as categories"),
        ("--numeric", "read these columns as numbers"),
        ("--ignore", "leave these columns out of the model"),
    ):
        group.add_argument(
            option, nargs="+", action="extend", default=default, metavar="COLUMN", help=what
        )
    group.add_argument("--id-column", metavar="COLUMN", help="the rows' identifier (not a feature)")
    group.add_argument("--time-column", metavar="COLUMN", help="the rows' time (not a feature)")


def _extra_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--extra-columns",
        choices=("refuse", "ignore"),
        help="a request column the contract does not know: refuse (default: dead-lettered "
        "with the reason) or ignore",
    )


def _contract_commands(commands: argparse._SubParsersAction) -> None:
    contract = commands.add_parser(
        "contract", help="the feature contract of your data: what a model reads and predicts"
    )
    actions = contract.add_subparsers(dest="contract_command", required=True, metavar="ACTION")
    infer = actions.add_parser(
        "infer",
        help="infer a contract from a table: print each decision and why, write contract.json",
        description="Exit code 2, with one line, for a source it cannot use.",
    )
    infer.add_argument("source", help="a CSV or Parquet file, or an SQLAlchemy URL")
    infer.add_argument("--label", required=True, help="the column to predict")
    query = infer.add_mutually_exclusive_group()
    query.add_argument("--table", help="with a database URL: read this table")
    query.add_argument("--query", help="with a database URL: read the rows of this SQL query")
    infer.add_argument(
        "--task",
        choices=("auto", "binary", "multiclass", "regression"),
        default="auto",
        help="default auto: from the label's values",
    )
    _column_roles(infer, default=[])
    infer.add_argument(
        "--output",
        type=Path,
        default=Path("contract.json"),
        help="where to write the contract (default contract.json)",
    )
    _logging(infer, "WARNING", hidden=True)
    infer.set_defaults(config=None, bus_option=[])  # offline: no bus, no tracking
    show = actions.add_parser(
        "show",
        help="print the contract of a registered model version (default: the champion)",
    )
    show.add_argument("version", type=int, nargs="?", help="registry version (default champion)")
    show.add_argument(
        "--format",
        choices=("json", "jsonschema"),
        default="json",
        help="json: the contract; jsonschema: the JSON Schema of a valid request's data",
    )
    _common(show)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamfit",
        description="Real-time LightGBM predictions on an event stream, retrained as labels come.",
    )
    parser.add_argument("--version", action="version", version=f"streamfit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="train and promote the initial model")
    _training(init, "init_max_evals")
    init.add_argument("--force", action="store_true", help="train even if a champion exists")

    predictor = commands.add_parser("predictor", help="run the prediction service")
    _serving(predictor)
    predictor.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="K",
        help="run K predictor processes in the consumer group (one per core to use; child i "
        "serves its metrics on the metrics port + 100 i); default 1",
    )
    predictor.add_argument(
        "--wait-for-model",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a first model instead of failing",
    )

    trainer = commands.add_parser("trainer", help="run the retraining service")
    _training(trainer, "max_evals")
    _instance_id(trainer)
    trainer.add_argument(
        "--gate-tolerance",
        type=float,
        help="how much worse (log loss) a challenger may be and still win",
    )

    app = commands.add_parser(
        "app", help="send the data set's test rows as requests (labels late or riding along)"
    )
    app.add_argument("--count", type=int, default=200, help="requests to send (default 200)")
    app.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    app.add_argument(
        "--label-delay",
        type=float,
        metavar="SECONDS",
        help="send true labels separately after this delay (default: inside request)",
    )
    app.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for missing answers after the last request",
    )
    app.add_argument("--summary-json", type=Path, help="write the summary to this file")

    demo = commands.add_parser(
        "demo", help="initial model + predictor + recorder + trainer + monitor + app in one go"
    )
    _serving(demo)
    _retrain_every(demo)
    _training(demo, "max_evals")
    demo.add_argument("--init-max-evals", type=int, help="budget of the initial training")
    demo.add_argument("--count", type=int, default=200, help="requests to send (default 200)")
    demo.add_argument("--rate", type=float, default=2.0, help="requests per second (default 2)")
    demo.add_argument(
        "--label-delay",
        type=float,
        metavar="SECONDS",
        help="send true labels separately after this delay",
    )
    demo.add_argument(
        "--summary-json", type=Path, help="write the whole summary to this file, as JSON"
    )

    leaderboard = commands.add_parser("leaderboard", help="the best trials of every round so far")
    leaderboard.add_argument("--round", dest="round_id", type=int, help="only this round")
    leaderboard.add_argument("--optimizer", choices=OPTIMIZERS, help="only this optimiser")
    leaderboard.add_argument("--limit", type=int, default=10, help="rows (default 10)")
    leaderboard.add_argument("--format", choices=("table", "csv", "json"), default="table")

    promote = commands.add_parser(
        "promote", help="make a model version the champion; predictors follow"
    )
    promote.add_argument("version", type=int, help="registry version, as in `now serving model vN`")
    promote.add_argument(
        "--allow-breaking",
        action="store_true",
        help="promote even if its contract breaks today's producers (a new required column, a "
        "type change, another task, label or classes)",
    )
    rollback = commands.add_parser(
        "rollback", help="go back to the previous champion; predictors follow"
    )

    recorder = commands.add_parser(
        "recorder",
        help="record requests, predictions and labels in the observation store; ask for a "
        "retrain every N labelled observations",
    )
    _retrain_every(recorder)
    recorder.add_argument(
        "--max-batch",
        type=int,
        help="largest batch per transaction: this x batches_per_commit (1000 x 5)",
    )
    recorder.add_argument(
        "--recorder-group", help="consumer group of the recorders (default streamfit-recorder)"
    )
    recorder.add_argument(
        "--retain",
        help="keep only observations recorded within a duration (7d, 12h) and/or the newest N "
        "rows (1000000, or 7d,1000000); default: keep everything",
    )
    _instance_id(recorder)

    _drift_aware(trainer)
    _drift_aware(demo)
    _monitoring(demo)
    monitor = commands.add_parser(
        "monitor",
        help="watch the served model: drift events on the drift topic, realised and estimated "
        "performance, MLflow metrics",
    )
    _monitoring(monitor)
    monitor.add_argument(
        "--no-tracking", action="store_true", help="do not log to the serving model's MLflow run"
    )
    drift = commands.add_parser(
        "drift",
        help="compare two CSV/Parquet files of rows: per-feature table and verdict",
        description="Exit code 0 whatever the verdict; 2 for input it cannot use.",
    )
    drift.add_argument("--reference", type=Path, required=True, help="reference rows (training)")
    drift.add_argument("--current", type=Path, required=True, help="rows to compare with it")
    drift.add_argument(
        "--contract",
        type=Path,
        help="compare the numeric and categorical columns of this contract (`streamfit "
        "contract show > contract.json` gives the served model's); default: the files' own "
        "columns (Adult's features in Adult rows)",
    )
    drift.add_argument("--columns", nargs="+", metavar="COLUMN", help="compare these columns")
    drift.add_argument(
        "--json", dest="json_out", type=Path, help="write the drift event (JSON) here"
    )
    drift.add_argument(
        "--report", dest="report_out", type=Path, help="write an HTML report with the chart here"
    )
    _logging(drift, "WARNING", hidden=True)
    drift.set_defaults(config=None, bus_option=[])  # offline: no bus, no tracking

    _contract_commands(commands)

    shadow = commands.add_parser(
        "shadow",
        help="score a registered version beside the champion; the trainers judge it on live "
        "labels (promote, reject, or keep the champion)",
    )
    shadow.add_argument("version", type=int, help="registry version of the challenger")
    _promotion(shadow)
    experiments = commands.add_parser(
        "experiments",
        help="what became of each challenger: its live comparison, running or decided, or the "
        "gate's refusal and its reason",
        description="Lists the live comparisons (shadow, canary) from the store and every "
        "challenger the trainer's gate refused (a worse holdout loss, or a contract that breaks "
        "today's producers) from the trial store: its round, version, the champion it was "
        "compared with and the reason.",
    )
    experiments.add_argument("--format", choices=("table", "json"), default="table")
    replay = commands.add_parser(
        "replay",
        help="re-score a slice of recorded labelled traffic with a registered version and "
        "compare it with the champion on the same rows (read-only)",
    )
    replay.add_argument("--version", dest="replay_version", type=int, required=True)
    replay.add_argument("--since", help="received at or after (epoch seconds or ISO-8601, UTC)")
    replay.add_argument("--until", help="received before (epoch seconds or ISO-8601, UTC)")
    replay.add_argument("--last", type=int, help="the newest N labelled requests of the slice")
    replay.add_argument("--format", choices=("table", "json"), default="table")
    for command in (predictor, trainer, demo):
        _promotion(command)

    status = commands.add_parser(
        "status",
        help="a live view of a running deployment from its services' metrics endpoints",
        description="Reads /metrics of each target: per predictor its rate, p99 latency, lag "
        "and model version; the recorder, trainer (last round, gate decision) and monitor "
        "(drift, realised vs estimated accuracy).",
    )
    status.add_argument(
        "--targets",
        metavar="HOST:PORT,...",
        help="metrics endpoints (default: every service's default metrics port on 127.0.0.1)",
    )
    status.add_argument(
        "--interval", type=float, default=2.0, help="seconds between reads (default 2)"
    )
    status.add_argument("--once", action="store_true", help="one snapshot, then exit")
    status.add_argument(
        "--json", dest="as_json", action="store_true", help="print the snapshot as JSON"
    )
    status.add_argument("--config", type=Path, help="TOML config file (for the default ports)")
    _logging(status, "WARNING")
    status.set_defaults(bus_option=[])

    for command in (
        shadow,
        experiments,
        replay,
        init,
        predictor,
        trainer,
        recorder,
        app,
        demo,
        leaderboard,
        promote,
        rollback,
        monitor,
    ):
        _common(command)
    for command in (trainer, recorder, demo, monitor, shadow, experiments):
        _store(command)
    for service, command in (
        ("predictor", predictor),
        ("recorder", recorder),
        ("trainer", trainer),
        ("monitor", monitor),
        ("demo", demo),
    ):
        _probes(command, service)
    for command in (init, trainer, demo, leaderboard, promote, rollback, experiments):
        _trials(command)
    for command in (init, trainer, recorder, app, demo, monitor):
        _data(command)
    for command in (predictor, recorder, demo):
        _extra_columns(command)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _SETTING_OPTIONS if hasattr(args, name)
    }
    options = dict(item.split("=", 1) for item in args.bus_option if "=" in item)
    if len(options) != len(args.bus_option):
        raise ConfigError("--bus-option takes KEY=VALUE")
    if options:
        overrides["bus_options"] = options
    return Settings.load(overrides, config_file=args.config)


def _run_service(service: Any, settings: Settings, name: str) -> None:
    """Run a service loop, with its /metrics, /healthz and /readyz (streamfit.ops.health) on its
    port; SIGINT/SIGTERM only ask it to stop (``/readyz`` turns 503, then it finishes its batch,
    flushes and commits). The process is the service's: large blocks get mappings of their
    own (streamfit/heap.py), so memory a model swap or a round frees goes back to the system."""
    from .ops.health import serving_probes
    from .ops.heap import map_large_blocks

    map_large_blocks()

    def _stop(signum: int, frame: object) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        service.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with serving_probes({name: service}, settings.metrics_port(name), settings.metrics_host):
        service.run()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from .demo import ensure_initial_model
    from .models.registry import ModelRegistry

    terminal: Terminal = args.terminal
    _remember_data(settings, args)
    if args.force and ModelRegistry.from_settings(settings).champion() is not None:
        from .training.round import run_round

        # A promotion goes through promotion.promote, which announces it on `models`.
        with terminal.progress() as progress:
            outcome = run_round(
                settings, trigger="manual", max_evals=settings.init_max_evals, progress=progress
            )
        terminal.say(
            f"v{outcome.version} {'promoted' if outcome.promoted else 'refused'}: {outcome.reason}"
        )
        return 0
    with terminal.progress() as progress:
        ensure_initial_model(settings, progress)
    return 0


def cmd_predictor(settings: Settings, args: argparse.Namespace) -> int:
    from .bus import bus_for
    from .demo import _partitions
    from .serving import Predictor

    bus = bus_for(settings)
    bus.ensure_topics(_partitions(settings))
    if args.processes != 1:
        from .serving.processes import run_predictor_processes

        if args.processes < 1:
            raise ConfigError(f"--processes must be at least 1, got {args.processes}")
        return run_predictor_processes(
            args.argv, args.processes, settings.metrics_port("predictor")
        )
    predictor = Predictor(settings, bus, wait_for_model_s=args.wait_for_model, owns_process=True)
    _run_service(predictor, settings, "predictor")
    return 0


def cmd_trainer(settings: Settings, args: argparse.Namespace) -> int:
    from .bus import bus_for
    from .demo import _partitions
    from .training.service import TrainerService

    bus = bus_for(settings)
    bus.ensure_topics(_partitions(settings))
    with args.terminal.progress(logging.getLogger("streamfit.trainer").info) as progress:
        _run_service(TrainerService(settings, bus, progress=progress), settings, "trainer")
    return 0


def cmd_recorder(settings: Settings, args: argparse.Namespace) -> int:
    from .bus import bus_for
    from .demo import _partitions
    from .recording import Recorder

    bus = bus_for(settings)
    bus.ensure_topics(_partitions(settings))
    _run_service(Recorder(settings, bus), settings, "recorder")
    return 0


def cmd_app(settings: Settings, args: argparse.Namespace) -> int:
    from .app import run_app
    from .bus import bus_for

    bus = bus_for(settings)
    with args.terminal.progress() as progress:
        summary = run_app(
            settings,
            bus,
            count=args.count,
            rate=args.rate,
            label_delay=args.label_delay,
            timeout=args.timeout,
            progress=progress,
        )
    args.terminal.say(summary.render())
    _write_json(args.summary_json, summary.as_dict())
    return 0 if summary.lost == 0 else 1


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from .demo import mlflow_ui_hint, render_summary, run_demo

    terminal: Terminal = args.terminal
    _remember_data(settings, args)
    with terminal.progress() as progress:
        summary = run_demo(
            settings,
            count=args.count,
            rate=args.rate,
            label_delay=args.label_delay,
            progress=progress,
        )
    if terminal.log_format == "json":  # one JSON object per line, for log shippers
        terminal.say(json.dumps(summary))
    else:
        terminal.say("\n" + render_summary(summary))
    _write_json(args.summary_json, summary)
    terminal.say("\n" + mlflow_ui_hint(settings))
    return 0 if summary["lost"] == 0 else 1


def cmd_leaderboard(settings: Settings, args: argparse.Namespace) -> int:
    from .training.trials import leaderboard_command

    print(leaderboard_command(settings, args.round_id, args.optimizer, args.limit, args.format))
    return 0


def cmd_promote(settings: Settings, args: argparse.Namespace) -> int:
    from .models.promotion import breaking_changes, promote

    breaking = breaking_changes(settings, args.version)
    if breaking and not args.allow_breaking:
        raise ConfigError(
            f"v{args.version}'s contract breaks the producers of today's champion: "
            f"{'; '.join(breaking)} (--allow-breaking promotes it anyway)"
        )
    reason = "manual, breaking: " + "; ".join(breaking) if breaking else "manual"
    entry = promote(settings, args.version, event="promoted", reason=reason, by="cli")
    args.terminal.say(f"champion is now v{entry.version} (promoted)")
    return 0


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from .models.promotion import rollback

    entry = rollback(settings, by="cli")
    args.terminal.say(f"champion is now v{entry.version} (rolled back)")
    return 0


def cmd_shadow(settings: Settings, args: argparse.Namespace) -> int:
    from .challengers.live import start_comparison

    comparison = start_comparison(settings, args.version, reason="manual (streamfit shadow)")
    print(
        f"shadowing v{comparison.challenger} against champion v{comparison.champion} "
        f"(comparison {comparison.id}); predictors running --promotion shadow score it, "
        "trainers decide on live labels"
    )
    return 0


def cmd_experiments(settings: Settings, args: argparse.Namespace) -> int:
    from .training.experiments import experiments_command

    print(experiments_command(settings, args.format))
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from .monitoring.replay import replay_command

    print(
        replay_command(
            settings,
            args.replay_version,
            since=args.since,
            until=args.until,
            last=args.last,
            output=args.format,
        )
    )
    return 0


def cmd_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from .bus import bus_for
    from .demo import _partitions
    from .monitoring import build_monitor

    # Background work: on a shared machine the predictors get the cores first.
    with contextlib.suppress(OSError):
        os.nice(10)
    bus = bus_for(settings)
    bus.ensure_topics(_partitions(settings))
    monitor = build_monitor(settings, bus, track=not args.no_tracking)
    log.info(
        "monitor: checking the last %d requests every %d, realised metrics over the last %d "
        "labelled; drift events on %r",
        settings.drift_window,
        settings.drift_every,
        settings.performance_window,
        settings.topics.drift,
    )
    _run_service(monitor, settings, "monitor")
    return 0


def cmd_drift(settings: Settings, args: argparse.Namespace) -> int:
    from .contract import Contract
    from .monitoring.offline import drift_command

    contract = Contract.load(args.contract) if args.contract else None
    code, text = drift_command(
        args.reference,
        args.current,
        args.json_out,
        args.report_out,
        columns=args.columns,
        contract=contract,
    )
    if code:
        print(f"streamfit drift: {text}", file=sys.stderr)
    else:
        print(text)
    return code


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.live import Live

    from .ops.console import render_status
    from .ops.status import default_targets, parse_targets, snapshot

    if args.interval <= 0:
        raise ValueError("--interval must be > 0")
    targets = parse_targets(args.targets) if args.targets else default_targets(settings)
    if args.once:
        # Two reads, --interval apart: rates and the recent p99 are differences.
        _, first = snapshot(targets)
        time.sleep(args.interval)
        state, _ = snapshot(targets, first)
        if args.as_json:
            print(json.dumps(state, indent=2))
        else:
            (args.terminal.console or Console(width=160)).print(render_status(state))
        return 0 if any(target["up"] for target in state["targets"]) else 1

    state, scrapes = snapshot(targets)
    with Live(render_status(state), console=Console(), auto_refresh=False) as live:
        while True:
            time.sleep(args.interval)
            state, scrapes = snapshot(targets, scrapes)
            live.update(render_status(state), refresh=True)


def cmd_contract(settings: Settings, args: argparse.Namespace) -> int:
    from .contract import infer_source

    if args.contract_command == "show":
        return _show_contract(settings, args)
    inference = infer_source(
        args.source,
        args.label,
        table=args.table,
        query=args.query,
        task=args.task,
        categorical=args.categorical,
        numeric=args.numeric,
        ignore=args.ignore,
        id_column=args.id_column,
        time_column=args.time_column,
        positive_class=args.positive_class,
    )
    _print_inference(args, inference)
    inference.contract.save(args.output)
    args.terminal.say(f"contract written to {args.output}")
    return 0


def _remember_data(settings: Settings, args: argparse.Namespace) -> None:
    """With ``--data``: the contract checked and written into the data directory, with the
    source, so every service started on it reads the same data (``streamfit.datasets``)."""
    if not settings.data:
        return
    from .datasets import remember_source

    inference = remember_source(settings)
    if inference is not None:
        _print_inference(args, inference)
    args.terminal.say(f"contract written to {settings.data_dir / 'contract.json'}")


def _print_inference(args: argparse.Namespace, inference: Any) -> None:
    from rich.console import Console

    from .ops.console import render_inference

    (args.terminal.console or Console(width=160)).print(render_inference(inference))


def _show_contract(settings: Settings, args: argparse.Namespace) -> int:
    from .models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    entry = registry.get(args.version) if args.version else registry.champion()
    if entry is None:
        raise ConfigError("no champion in the registry yet: give a version")
    bundle, _ = registry.load(entry, settings.model_cache)
    contract = bundle.contract
    text = contract.to_json()
    if args.format == "jsonschema":
        text = json.dumps(contract.json_schema(), indent=2) + "\n"
    sys.stdout.write(text)
    return 0


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "init": cmd_init,
    "predictor": cmd_predictor,
    "trainer": cmd_trainer,
    "recorder": cmd_recorder,
    "app": cmd_app,
    "demo": cmd_demo,
    "leaderboard": cmd_leaderboard,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "monitor": cmd_monitor,
    "shadow": cmd_shadow,
    "replay": cmd_replay,
    "experiments": cmd_experiments,
    "drift": cmd_drift,
    "status": cmd_status,
    "contract": cmd_contract,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what `predictor --processes K` hands on to its K children
    args.terminal = terminal = Terminal.detect(args.log_format)
    configure_logging(terminal, args.log_level)
    # This process is a service (or a one-shot command) that logs: MLflow's download progress
    # bars and its "View run at" lines on stdout would interleave with the log lines. A user who
    # wants them sets the variables.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO lines: table creation...
    # MLflow's loggers then go through ours (one format, JSON too) instead of its own handler.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    # MLflow's client retries a request 7 times with doubling backoff and waits 120 s for each
    # answer: minutes before a round learns its tracking server is gone. The trainer keeps the
    # retrain command and retries the round itself, so fail fast: 3 retries (1, 2, 4 s), 30 s.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from .bus import BusError
    from .models.bundle import BundleError
    from .stores import StoreError

    try:
        settings = settings_from(args)
        log.debug("settings: %s", settings)
        return COMMANDS[args.command](settings, args)
    except (ConfigError, BundleError, BusError, StoreError, ValueError, FileNotFoundError) as exc:
        terminal.error(f"streamfit {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``streamfit`` executable: :func:`main`, then exit without the interpreter's final
    garbage collection. A service's heap (MLflow, pandas, LightGBM) takes that collection
    seconds on a busy machine: a predictor told to stop (SIGTERM) must be gone within 5 s, and
    everything that matters (flush, commit, close) is done before ``main`` returns."""
    code = main()
    gc.freeze()  # the final collection skips the frozen objects; the process exits at once
    sys.exit(code)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        entry()
