"""One frozen settings object for every service.

Precedence: CLI flags > ``STREAMFIT_*`` environment variables > a TOML config file > defaults.
Nothing else in streamfit reads ``os.environ``; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "STREAMFIT_"
# Bus option keys whose values are secrets: masked wherever settings are shown.
SECRET_KEY_PARTS = ("password", "secret", "jaas", "credential", "key.pem")
MASK = "***"
GUARANTEES = ("at-least-once", "exactly-once")
OPTIMIZERS = ("hyperopt", "skopt", "optuna")
# offline: the holdout gate promotes (as ever); shadow: the gate's winner is shadowed and the
# live comparison on labelled traffic decides (streamfit.challengers.live); canary: as shadow, but
# canary_percent % of requests (a stable hash of request_id) are answered by the challenger.
PROMOTIONS = ("offline", "shadow", "canary")
# model_runtime: "auto" tries the compiled runtimes fastest first (streamfit.serving.runtimes,
# whose registry must name exactly these, in this order).
MODEL_RUNTIMES = ("auto", "lleaves", "tl2cgen")
TASK_CHOICES = ("auto", "binary", "multiclass", "regression")
# Service -> the setting holding the port of its /metrics, /healthz and /readyz.
METRICS_PORTS = {
    service: f"{service}_metrics_port"
    for service in ("predictor", "recorder", "trainer", "monitor", "demo")
}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message says which and why."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Retention:
    """How much of the observation store to keep: rows recorded within ``seconds`` and/or the
    newest ``rows`` rows (None: no bound of that kind). Both given: a row goes when either
    bound says so.

    >>> Retention.parse("7d"), Retention.parse("12h,1000000").rows, Retention.parse("").bounded
    (Retention(seconds=604800.0, rows=None), 1000000, False)
    """

    seconds: float | None = None
    rows: int | None = None

    @property
    def bounded(self) -> bool:
        return self.seconds is not None or self.rows is not None

    @classmethod
    def parse(cls, text: str) -> Retention:
        """``"7d"``, ``"12h"``, ``"90m"``, ``"30s"``, ``"2w"`` (a duration), ``"1000000"`` (rows),
        both comma-separated, or ``""`` (keep everything)."""
        seconds: float | None = None
        rows: int | None = None
        for part in (p.strip().lower() for p in text.split(",") if p.strip()):
            duration = _DURATION.fullmatch(part)
            if duration and seconds is None and float(duration[1]) > 0:
                seconds = float(duration[1]) * _UNIT_S[duration[2]]
            elif part.isdigit() and rows is None and int(part) > 0:
                rows = int(part)
            else:
                raise ConfigError(
                    f"retain must be a duration (7d, 12h, 30m, 45s, 2w), a row count "
                    f"(1000000) or both (7d,1000000), each positive and once, got {text!r}"
                )
        return cls(seconds, rows)


@dataclass(frozen=True)
class Topics:
    requests: str = "requests"
    predictions: str = "predictions"
    retrain: str = "retrain"
    models: str = "models"
    dead_letter: str = "dead_letter"
    labels: str = "labels"
    drift: str = "drift"
    search: str = "search"  # a round's shared study, announced for the other trainers (study.py)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("streamfit-data")
    bus: str = "memory://"
    # Extra Kafka client settings (SASL/TLS...), e.g. {"security.protocol": "SASL_SSL"}.
    bus_options: Mapping[str, str] = field(default_factory=dict)
    # A file holding the SASL password (sasl.password), read once here: no password on a
    # command line or in the environment. Empty: none (or one in bus_options).
    bus_password_file: str = ""
    # The password read from bus_password_file: never shown (see __repr__), never compared.
    bus_password: str = field(default="", init=False, repr=False, compare=False)
    request_partitions: int = 3  # partitions of requests and predictions, created on Kafka
    tracking_uri: str = ""  # empty: sqlite:///<data_dir>/mlflow.db
    # Observation store (SQLAlchemy URL), written by the recorder, read by trainer and monitor.
    store: str = ""  # empty: sqlite:///<data_dir>/observations.db
    # Trial store (SQLAlchemy URL); empty: the observation store's database when that is a
    # server (trainers on several machines then share their trials), else
    # sqlite:///<data_dir>/trials.db.
    trials: str = ""
    experiment: str = "streamfit"
    registered_model: str = "streamfit-model"  # the MLflow registered model served
    topics: Topics = field(default_factory=Topics)
    # Your data (streamfit.datasets). data: a CSV or Parquet path or an SQLAlchemy URL (with
    # data_table or data_query); empty: the bundled example, UCI Adult. contract: a contract
    # file to train on (empty: <data_dir>/contract.json when `streamfit init` wrote one, else
    # inferred from the data with the settings below).
    data: str = ""
    data_table: str = ""
    data_query: str = ""
    label: str = ""
    task: str = "auto"
    contract: str = ""
    id_column: str = ""
    time_column: str = ""
    ignore: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    positive_class: str = ""
    # A request column the contract does not know: "refuse" (dead-lettered) or "ignore".
    extra_columns: str = "refuse"
    # Predictor
    retrain_every: int = 50
    keep_models: int = 2
    max_batch: int = 1000
    # Under a backlog, up to this many micro-batches are answered per acknowledgement (one flush
    # and offset commit, or one transaction): fewer broker round trips and transaction markers
    # per request. A crash then redelivers up to max_batch * batches_per_commit requests
    # (at-least-once), and exactly-once answers become visible per transaction. Without a
    # backlog a poll returns one micro-batch or less, acknowledged at once.
    batches_per_commit: int = 5
    linger_ms: float = 5.0
    guarantee: str = "at-least-once"
    group: str = "streamfit-predictor"
    # Every group member (predictor, recorder, trainer) joins its consumer group as
    # <group>-<instance_id>-<slot>, stable across restarts: a replacement takes a killed
    # member's partitions at once (Kafka's static membership), and an exactly-once predictor's
    # transactional id, the same, fences its killed predecessor's open transaction (see
    # streamfit/instance.py). Empty: the host name and a digest of the data directory. The slot
    # tells apart the processes sharing one data directory (--processes K). Set it per process
    # where host names are not stable or not unique (containers): two live members with one id
    # fence each other, and the fenced one stops.
    instance_id: str = ""
    recorder_group: str = "streamfit-recorder"
    # Serve a compiled copy of the model (built off the hot path and checked against LightGBM
    # first); LightGBM serves meanwhile, and whenever no runtime is available or it is refused.
    compile_model: bool = True
    # Which compiled runtime: "auto" (lleaves, else tl2cgen), or one of MODEL_RUNTIMES by name.
    model_runtime: str = "auto"
    # Where compiled models are kept, by content (model text, runtime, versions): predictors
    # sharing it build each model once. Empty: <data_dir>/compiled-models.
    compiled_cache: str = ""
    # Observation store retention, applied by the recorder in the background: a duration
    # ("7d", "12h"), a row count ("1000000") or both ("7d,1000000"). Empty: keep everything.
    retain: str = ""
    # Trainer: one consumer group on the one-partition retrain topic (one works, others wait)
    trainer_group: str = "streamfit-trainer"
    max_evals: int = 10
    init_max_evals: int = 30
    optimizer: str = "hyperopt"
    train_threads: int = 1
    seed: int = 42
    gate_tolerance: float = 0.005
    warm_start_top_k: int = 5  # best earlier trials a round re-scores first (same space)
    # Gate holdout: this share of adult.data is never trained on (same rows every round), and
    # the newest gate_recent_fraction of the labelled observations is held out of each round.
    holdout_fraction: float = 0.1
    gate_recent_fraction: float = 0.2  # newest labelled share held out of each round
    pruning: bool = True  # Optuna only: stop unpromising CV runs early
    # A round trains on (at most) the newest train_window labelled observations besides
    # adult.data: the cost and memory of a round stay bounded however long the stream runs.
    train_window: int = 200_000
    # At most this many boosting rounds (a tree each; one per class for multiclass) in a trained
    # model, searched and refitted within the bound: a larger model predicts better for longer
    # but costs the predictor more per request (docs/benchmarks/your-data.md). 0: no bound.
    max_boost_rounds: int = 0
    # The round's final fit on a Dask cluster (lightgbm.dask, the dask extra): the scheduler's
    # address, tcp://host:8786; empty: in the trainer's own process. A fit that loses a worker
    # or outlasts dask_timeout_seconds fails the round (retried, nothing promoted).
    dask_scheduler: str = ""
    dask_timeout_seconds: float = 1800.0

    # Monitor: drift and performance, computed off the predictor's hot path.
    drift_window: int = 1000  # most recent requests scored per drift check
    drift_every: int = 250  # new observations between two checks
    drift_reference_rows: int = 5000  # reference sample the domain classifier sees
    drift_alpha: float = 0.01  # family-wise level of one window (every feature + classifier)
    drift_correction: str = "holm"  # or "bonferroni", "bh" (Benjamini-Hochberg)
    # Effect floors, off by default: false alarms are controlled by the corrected p-values. Set
    # one only to declare a shift too small to matter (PSI 0.04 = a share moving 50 % -> 40 %).
    drift_psi_floor: float = 0.0  # a feature drifts only if its PSI reaches this too
    drift_score_floor: float = 0.0  # the classifier alarms only if its drift score does too
    # The monitor's false-alarm budget over time: expected checks between false alarms (any
    # source). Half goes to the window's tests (alpha per check at most 1 / (2 ERT)), half to a
    # per-feature change scan that accumulates evidence across checks; the monitor restarts after
    # an alarm (monitoring/sequential.py). 200, twice the target of >= 100, so that a measured
    # run of 1,000 checks (at most 5 false alarms expected) clears 100 in about 99 % of runs.
    drift_ert: float = 200.0
    drift_folds: int = 3
    drift_classifier: str = "lightgbm"  # or "random_forest" (MLBox's choice)
    performance_window: int = 1000  # last W labelled observations for realised metrics
    monitor_poll_seconds: float = 1.0  # at most one check per this many seconds
    # Drift-aware retraining: leave out features whose drift score (recent requests against the
    # training data) reaches this, 0 = keep all; and let a drifted=true event trigger a retrain.
    drop_drifting_features: float = 0.0
    retrain_on_drift: bool = False

    # Challengers on live traffic (trainer, predictor, demo: one setting). The sequential test
    # (streamfit.challengers.comparison): level live_alpha, probabilities clipped to
    # [eps, 1 - eps], no decision before live_min_pairs labelled pairs, the champion kept at
    # live_max_pairs: 10,000 decides a challenger about one accuracy point better or worse in
    # about 9 runs of 10 (benchmarks/challenger.py, part "defaults"); a clearly worse one is
    # rejected after a few hundred.
    promotion: str = "offline"
    live_alpha: float = 0.05
    live_epsilon: float = 0.01  # probabilities clipped to [eps, 1 - eps] in the live test
    live_min_pairs: int = 50
    live_max_pairs: int = 10_000
    live_check_seconds: float = 1.0  # how often a trainer looks at the pairs
    # Canary mode: the share of requests the challenger answers (crc32(request_id) % 100 < it),
    # and the floor of its label-free estimated accuracy below which it is rolled back before
    # its labels come (judged once it answered live_min_pairs requests).
    canary_percent: int = 10
    canary_accuracy_floor: float = 0.6
    # Operations: /metrics, /healthz and /readyz (see streamfit.ops.health) of each service on a
    # port of its own by default, so that they can all run on one host; 0 = no endpoint.
    metrics_host: str = "0.0.0.0"
    predictor_metrics_port: int = 9471
    recorder_metrics_port: int = 9472
    trainer_metrics_port: int = 9473
    monitor_metrics_port: int = 9474
    demo_metrics_port: int = 9470  # the demo process: every service it runs, on one endpoint

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "bus_password", self._read_password())
        positive = (
            "request_partitions",
            "retrain_every",
            "keep_models",
            "max_batch",
            "batches_per_commit",
            "max_evals",
            "init_max_evals",
            "train_threads",
            "train_window",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("holdout_fraction", "gate_recent_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.gate_tolerance < 0 or self.warm_start_top_k < 0 or self.max_boost_rounds < 0:
            raise ConfigError("gate_tolerance, warm_start_top_k and max_boost_rounds must be >= 0")
        for name in ("drift_window", "drift_every", "drift_reference_rows", "performance_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.drift_folds < 2:
            raise ConfigError(f"drift_folds must be at least 2, got {self.drift_folds}")
        if not 0.0 < self.drift_alpha < 1.0:
            raise ConfigError(f"drift_alpha must be in (0, 1), got {self.drift_alpha}")
        for name in ("drift_psi_floor", "drift_score_floor", "monitor_poll_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.drop_drifting_features <= 1.0:
            raise ConfigError(
                f"drop_drifting_features must be in [0, 1], got {self.drop_drifting_features}"
            )
        if self.drift_correction not in ("holm", "bonferroni", "bh"):
            raise ConfigError(
                f"drift_correction must be holm, bonferroni or bh, got {self.drift_correction!r}"
            )
        if self.drift_ert < 1:
            raise ConfigError(f"drift_ert must be at least 1 check, got {self.drift_ert}")
        if self.drift_classifier not in ("lightgbm", "random_forest"):
            raise ConfigError(
                f"drift_classifier must be lightgbm or random_forest: {self.drift_classifier!r}"
            )
        for name in METRICS_PORTS.values():
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a TCP port (0 = off), got {getattr(self, name)}")
        if self.linger_ms < 0:
            raise ConfigError(f"linger_ms must be >= 0, got {self.linger_ms}")
        if self.guarantee not in GUARANTEES:
            raise ConfigError(f"guarantee must be one of {GUARANTEES}, got {self.guarantee!r}")
        if self.promotion not in PROMOTIONS:
            raise ConfigError(f"promotion must be one of {PROMOTIONS}, got {self.promotion!r}")
        if not 0.0 < self.live_alpha < 1.0 or not 0.0 < self.live_epsilon < 0.5:
            raise ConfigError(
                f"live_alpha must be in (0, 1) and live_epsilon in (0, 0.5), got "
                f"{self.live_alpha} and {self.live_epsilon}"
            )
        if not 1 <= self.live_min_pairs <= self.live_max_pairs:
            raise ConfigError(
                f"need 1 <= live_min_pairs <= live_max_pairs, got {self.live_min_pairs} and "
                f"{self.live_max_pairs}"
            )
        if not 0 <= self.canary_percent <= 100 or not 0.0 <= self.canary_accuracy_floor <= 1.0:
            raise ConfigError(
                f"canary_percent must be in [0, 100] and canary_accuracy_floor in [0, 1], got "
                f"{self.canary_percent} and {self.canary_accuracy_floor}"
            )
        if self.live_check_seconds < 0:
            raise ConfigError(f"live_check_seconds must be >= 0, got {self.live_check_seconds}")
        if self.model_runtime not in MODEL_RUNTIMES:
            raise ConfigError(
                f"model_runtime must be one of {MODEL_RUNTIMES}, got {self.model_runtime!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("store", "trials"):
            url = getattr(self, name)
            if url and not url.startswith(("sqlite:", "postgresql")):
                raise ConfigError(
                    f"{name} must be an SQLAlchemy URL, sqlite:///path or "
                    f"postgresql+psycopg://user:password@host/db, got {url!r}"
                )
        if self.dask_scheduler and "://" not in self.dask_scheduler:
            raise ConfigError(
                f"dask_scheduler must be a scheduler address, tcp://host:8786, got "
                f"{self.dask_scheduler!r}"
            )
        if self.dask_timeout_seconds <= 0:
            raise ConfigError(f"dask_timeout_seconds must be > 0, got {self.dask_timeout_seconds}")
        if self.task not in TASK_CHOICES:
            raise ConfigError(f"task must be one of {TASK_CHOICES}, got {self.task!r}")
        if self.extra_columns not in ("refuse", "ignore"):
            raise ConfigError(f"extra_columns must be refuse or ignore, got {self.extra_columns!r}")
        if self.data and not self.label and not self.contract:
            raise ConfigError("data needs label (the column to predict) or a contract file")
        if (self.data_table or self.data_query) and "://" not in self.data:
            raise ConfigError("data_table and data_query need data to be a database URL")
        Retention.parse(self.retain)  # a clear ConfigError now, not when the recorder starts
        if not (self.bus.startswith("memory") or self.bus.startswith("kafka://")):
            raise ConfigError(f"bus must be 'memory://' or 'kafka://host:port', got {self.bus!r}")

    def _read_password(self) -> str:
        if not self.bus_password_file:
            return ""
        if "sasl.password" in self.bus_options:
            raise ConfigError(
                "give the SASL password once: bus_password_file or bus option sasl.password"
            )
        path = Path(self.bus_password_file).expanduser()
        try:
            password = path.read_text().strip("\r\n")
        except OSError as exc:
            raise ConfigError(f"bus_password_file {path}: cannot read it ({exc.strerror})") from exc
        if not password:
            raise ConfigError(f"bus_password_file {path} is empty")
        return password

    def bus_client_options(self) -> dict[str, str]:
        """The bus options for the client, with the password of ``bus_password_file``."""
        options = dict(self.bus_options)
        if self.bus_password:
            options["sasl.password"] = self.bus_password
        return options

    def __repr__(self) -> str:
        """As the dataclass's, with every secret masked (settings are logged at start-up)."""
        shown = []
        for item in fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name == "bus_options":
                value = {k: MASK if _is_secret(k) else v for k, v in value.items()}
            shown.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__

    @property
    def mlflow_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Artifacts beside a local tracking store; a tracking server stores its own (None)."""
        if self.mlflow_uri.startswith(("http://", "https://")):
            return None
        return (self.data_dir.resolve() / "mlartifacts").as_uri()

    @property
    def model_cache(self) -> Path:
        """Bundles fetched from the registry, verified: a cache, rebuilt when deleted."""
        return self.data_dir / "model-cache"

    @property
    def compiled_models(self) -> Path:
        """Compiled copies of models by cache key: a derived cache, rebuilt when deleted."""
        return (
            Path(self.compiled_cache).expanduser()
            if self.compiled_cache
            else (self.data_dir / "compiled-models")
        )

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def contract_file(self) -> Path:
        """The contract to train on: ``contract``, else the one ``streamfit init`` wrote."""
        return (
            Path(self.contract).expanduser() if self.contract else self.data_dir / "contract.json"
        )

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data_dir.resolve() / 'observations.db'}"

    @property
    def retention(self) -> Retention:
        return Retention.parse(self.retain)

    @property
    def trials_url(self) -> str:
        if self.trials:
            return self.trials
        if self.store and not self.store.startswith("sqlite"):
            return self.store  # a database server: no SQLite file on a trainer's own disk
        return f"sqlite:///{self.data_dir.resolve() / 'trials.db'}"

    def metrics_port(self, service: str) -> int:
        """The port of ``service``'s /metrics, /healthz and /readyz (0: none)."""
        return int(getattr(self, METRICS_PORTS[service]))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Settings:
        """Merge defaults, the TOML file, ``STREAMFIT_*`` variables and ``overrides`` (CLI)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            with path.open("rb") as handle:
                table = tomllib.load(handle)
            values.update(table.get("streamfit", table))
        for item in fields(cls):
            if not item.init:
                continue
            raw = environ.get(ENV_PREFIX + item.name.upper())
            if raw is not None:
                values[item.name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**{k: _coerce(k, v) for k, v in values.items()})


def _is_secret(key: str) -> bool:
    return any(part in key.lower() for part in SECRET_KEY_PARTS)


def _coerce(name: str, value: Any) -> Any:
    """Turn text from the environment or TOML into the field's type, with a clear error."""
    kinds = {f.name: f for f in fields(Settings) if f.init}
    if name not in kinds:
        raise ConfigError(f"unknown setting {name!r}")
    default = kinds[name].default
    if default is dataclasses.MISSING:
        default = kinds[name].default_factory()  # type: ignore[misc]
    try:
        if isinstance(default, Topics):
            return value if isinstance(value, Topics) else Topics(**dict(value))
        if isinstance(default, Mapping):
            if isinstance(value, str):  # "key=value,key=value" from the environment
                return dict(p.split("=", 1) for p in value.split(",") if p)
            return dict(value)
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(default, Path):
            return Path(value)
        if isinstance(default, tuple):  # "a,b" from the environment, a list from TOML
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(item).strip() for item in items if str(item).strip())
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={value!r} is invalid: {exc}") from exc


__all__ = [
    "ConfigError",
    "GUARANTEES",
    "METRICS_PORTS",
    "OPTIMIZERS",
    "PROMOTIONS",
    "Retention",
    "Settings",
    "Topics",
]
