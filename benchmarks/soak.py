"""Soak run: a predictor, a recorder and a trainer as separate processes on the real broker and
the real MLflow server, a steady stream of requests with late labels, a retrain every N
labelled observations; nothing may be lost and no service may grow.

    python benchmarks/soak.py [--requests N] [--rate R] [--retrain-every M]

The issue's full figure is ``--requests 2000000 --retrain-every 100000 --rate 1500`` (23
minutes here); the default (60,000 at 400/s, a retrain every 15,000 labelled) takes about three
to five minutes. ``--noop`` adds the no-op loop as an RSS yardstick. The sender
is this process (one producer, labels ``--label-delay`` seconds after their request); it reads
the predictions back ``read_committed`` and counts every request id once.

Figures: sent, answered, lost, duplicates; the RSS of each service when the stream starts, at
its middle and at its end; throughput (predictions read back per second) over each 10 % of the
run; retrains completed (promotions announced on ``models``); the predictor's RSS as each
promotion is announced (what the swaps before it left); every service's RSS after the last
round (``after_settle``: the stream over, the last promoted model swapped in and compiled); the
trainer's peak RSS in each round, beside the rows it trained on.
With ``--retain`` (the recorder's retention, e.g. ``30s`` for a short run) the observation
store's rows and bytes are reported at each 10 % too: flat once the first retention applied.
``--store postgresql`` records into a fresh schema of ``scripts/postgres``'s server (dropped
afterwards) instead of the SQLite file.
Prints a table and writes ``benchmarks/results/soak.json``. Needs ``scripts/kafka up`` and
``scripts/mlflow up``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmHWM``: its peak since the last reset_peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def reset_peak(pid: int) -> None:
    """Start a new ``VmHWM`` from the process's RSS now (Linux's clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


_ROUND_ROWS = re.compile(r"retraining \(\w+\) on (\d+) new labelled observations")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="streamfit-soak-"))
        suffix = uuid.uuid4().hex[:8]
        from streamfit.config import Settings, Topics

        self.topics = Topics(**{name: f"soak-{name}-{suffix}" for name in vars(Topics())})
        topic_lines = "\n".join(f'{k} = "{v}"' for k, v in vars(self.topics).items())
        self.config = self.root / "streamfit.toml"
        self.config.write_text(
            f'data_dir = "{self.root / "data"}"\nbus = "{args.bus}"\n'
            f'group = "soak-predictors-{suffix}"\ntrainer_group = "soak-trainers-{suffix}"\n'
            f'recorder_group = "soak-recorders-{suffix}"\ntracking_uri = "{args.tracking_uri}"\n'
            f'experiment = "soak-{suffix}"\nregistered_model = "soak-{suffix}"\n'
            f"[topics]\n{topic_lines}\n"
        )
        self.schema = ""
        if args.store == "postgresql":
            self.schema = f"soak_{suffix}"
            with _admin(args.postgres) as db:
                db.exec_driver_sql(f"CREATE SCHEMA {self.schema}")
            url = f"{args.postgres}?options=-csearch_path%3D{self.schema}"
            with self.config.open("r+") as config:
                text = config.read()
                config.seek(0)
                config.write(f'store = "{url}"\n' + text)
        self.settings = Settings.load(config_file=self.config, environ={})
        self.store: Any = None  # opened once the recorder made it: its size at each 10 %
        self.processes: dict[str, subprocess.Popen] = {}

    def cli(self, command: str, *extra: str, wait: bool = False) -> subprocess.Popen:
        log = (self.root / f"{command}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamfit.cli", command, "--config", str(self.config), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "STREAMFIT_GATE_TOLERANCE": "10"},
        )
        if wait:
            if process.wait(timeout=1800) != 0:
                raise SystemExit(f"{command} failed: {self.log(command)[-2000:]}")
        else:
            self.processes[command] = process
        return process

    def start_noop(self) -> None:
        """The no-op loop (benchmarks/noop_loop.py) on the same requests in a group of its own:
        the RSS a bare confluent-kafka client reaches on this stream, beside the services'."""
        log = (self.root / "noop.log").open("ab")
        bootstrap = self.args.bus.removeprefix("kafka://")
        self.processes["noop"] = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parent / "noop_loop.py"),
                *("--bootstrap", bootstrap, "--requests", self.topics.requests),
                *("--predictions", f"{self.topics.predictions}-noop"),
                *("--group", f"soak-noop-{uuid.uuid4().hex[:8]}"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def log(self, command: str) -> str:
        return (self.root / f"{command}.log").read_text()

    def wait_for(self, command: str, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(command):
            if self.processes[command].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command}: {text!r} never logged: {self.log(command)[-2000:]}")
            time.sleep(0.2)

    def wait_for_compiles(self, promotions: int, timeout: float) -> None:
        """Until the predictor has compiled (or refused to compile) every promoted model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log("predictor")
            handled = sum(
                log.count(text) for text in (" compiled by ", "stays on LightGBM", "not swapped in")
            )
            if handled >= promotions + 1:  # + the initial model
                return
            time.sleep(1)

    def rss(self) -> dict[str, float]:
        return {name: rss_mb(p.pid) for name, p in self.processes.items()}

    def store_size(self) -> dict[str, int]:
        if self.store is None:
            from streamfit.stores import ObservationStore

            self.store = ObservationStore(self.settings.store_url)
        rows, size = self.store.size()
        return {"rows": rows, "bytes": size}

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.schema:
            with _admin(self.args.postgres) as db:
                db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def run(self) -> dict[str, Any]:
        from streamfit import messages
        from streamfit.bus import get_bus
        from streamfit.datasets.adult import LABEL_COLUMN, label_to_int
        from streamfit.datasets.adult import requests as adult_requests

        args, topics = self.args, self.topics
        bus = get_bus(args.bus)
        bus.ensure_topics({**{t: 1 for t in vars(topics).values()}, topics.requests: 3})
        print(f"initial model ({args.max_evals} trials)...", flush=True)
        self.cli("init", "--max-evals", str(args.max_evals), wait=True)
        self.cli("predictor")
        retain = ("--retain", args.retain) if args.retain else ()
        self.cli("recorder", "--retrain-every", str(args.retrain_every), *retain)
        window = ("--train-window", str(args.train_window)) if args.train_window else ()
        self.cli("trainer", "--max-evals", str(args.max_evals), *window)
        if args.noop:
            self.start_noop()
        self.wait_for("predictor", "predictor consuming")
        self.wait_for("recorder", "recorder consuming")
        self.wait_for("trainer", "trainer waiting")

        rows = adult_requests(5000, seed=0)
        payloads = []
        for row in rows:
            label = label_to_int(row[LABEL_COLUMN])
            data = {k: v for k, v in row.items() if k != LABEL_COLUMN}
            payloads.append((data, label))
        total = args.requests
        answered: set[int] = set()
        duplicates = 0
        promotions: list[int] = []
        marks: list[tuple[float, int]] = []  # (time, answered) at each 10 % of the run
        rss = {"start": self.rss()}
        rss_per_10pct: list[dict[str, float]] = []
        store_per_10pct: list[dict[str, int]] = []
        sent = 0
        done = threading.Event()

        def send() -> None:
            nonlocal sent
            late: list[tuple[float, int, int]] = []
            with bus.producer() as producer:
                start = time.monotonic()
                for i in range(total):
                    due = start + i / args.rate
                    while (now := time.monotonic()) < due:
                        time.sleep(min(due - now, 0.005))
                    while late and late[0][0] <= now:
                        _, j, label = heapq.heappop(late)
                        producer.produce(topics.labels, messages.label(str(j), label), b"%d" % j)
                    data, label = payloads[i % len(payloads)]
                    producer.produce(topics.requests, messages.request(str(i), data), b"%d" % i)
                    sent += 1
                    if label is not None:
                        heapq.heappush(late, (now + args.label_delay, i, label))
                    if i % 5000 == 0:
                        producer.flush()
                while late:
                    time.sleep(0.05)
                    now = time.monotonic()
                    while late and late[0][0] <= now:
                        _, j, label = heapq.heappop(late)
                        producer.produce(topics.labels, messages.label(str(j), label), b"%d" % j)
            done.set()

        # The predictor's RSS as each promotion is announced: what the swaps before it left.
        rss_at_promotions: list[dict[str, float]] = []

        def promoted(message: Any) -> None:
            version = orjson.loads(message.value)["version"]
            promotions.append(version)
            rss_at_promotions.append({"version": version, "predictor": self.rss()["predictor"]})

        # The trainer's peak RSS in each round: rounds run back to back once the stream is
        # steady, so its RSS at any one moment is some point of some round; a round's peak is
        # the like-for-like figure, against its window's size.
        trainer_rounds: list[dict[str, float]] = []
        trainer_pid = self.processes["trainer"].pid
        reset_peak(trainer_pid)

        def rounds_done() -> None:
            rows, sizes = 0, []  # each finished round's rows: from its start, logged last before
            for line in self.log("trainer").splitlines():  # (a failed round logs a start too)
                if started := _ROUND_ROWS.search(line):
                    rows = int(started.group(1))
                elif "round done" in line:
                    sizes.append(rows)
            for rows in sizes[len(trainer_rounds) :]:
                peak = rss_mb(trainer_pid, "VmHWM")
                reset_peak(trainer_pid)
                trainer_rounds.append({"rows": rows, "peak_rss_mb": peak})

        predictions = bus.consumer([topics.predictions], group=None)
        models = bus.consumer([topics.models], group=None)
        predictions.poll(1, timeout=1)
        models.poll(1, timeout=1)
        started = time.monotonic()
        sender = threading.Thread(target=send, name="soak-sender", daemon=True)
        sender.start()
        next_mark = 1
        last_news = last_look = time.monotonic()
        while len(answered) < total:
            for message in predictions.poll(5000, timeout=0.2):
                request_id = int(orjson.loads(message.value)["request_id"])
                if request_id in answered:
                    duplicates += 1
                else:
                    answered.add(request_id)
                    last_news = time.monotonic()
            for message in models.poll(10, timeout=0):
                promoted(message)
            if time.monotonic() - last_look > 1:
                rounds_done()
                last_look = time.monotonic()
            while next_mark <= 10 and len(answered) >= total * next_mark // 10:
                marks.append((time.monotonic() - started, len(answered)))
                rss_per_10pct.append(self.rss())
                store_per_10pct.append(self.store_size())
                if next_mark == 1:
                    rss["warm"] = rss_per_10pct[-1]
                if next_mark == 5:
                    rss["middle"] = rss_per_10pct[-1]
                print(
                    f"{next_mark * 10:>3} %: {len(answered)} answered at "
                    f"{marks[-1][0]:.0f} s, RSS {rss_per_10pct[-1]}, store "
                    f"{store_per_10pct[-1]}, promotions {promotions}",
                    flush=True,
                )
                next_mark += 1
            if done.is_set() and time.monotonic() - last_news > args.timeout:
                break
        wall = time.monotonic() - started
        rss["end"] = self.rss()
        sender.join(timeout=60)
        # rounds asked for near the end may still run: give the trainer its last round
        deadline = time.monotonic() + args.settle
        expected = (total // args.retrain_every) if args.retrain_every else 0
        while time.monotonic() < deadline and self.log("trainer").count("round done") < expected:
            for message in models.poll(10, timeout=0.5):
                promoted(message)
            rounds_done()
        rounds_done()
        # The last promotion's swap and compile have had their time by now (or get it here).
        self.wait_for_compiles(len(promotions), min(args.settle, 600))
        rss["after_settle"] = self.rss()
        rounds = self.log("trainer").count("round done")
        failed_rounds = self.log("trainer").count("retraining failed")
        predictions.close()
        models.close()
        bus.close()
        throughput = []
        previous = (0.0, 0)
        for at, count in marks:
            span = max(at - previous[0], 1e-9)
            throughput.append(round((count - previous[1]) / span, 1))
            previous = (at, count)
        watched = list(rss["start"])
        growth = {
            name: round(100 * (rss["end"][name] - rss["start"][name]) / rss["start"][name], 1)
            for name in watched
        }
        # From the first 10 % on: by then every service has warmed up (the trainer has run a
        # round and its train_window is full when the run is 10 windows long).
        growth_after_warmup = {
            name: round(100 * (rss["end"][name] - rss["warm"][name]) / rss["warm"][name], 1)
            for name in watched
            if "warm" in rss
        }
        growth_second_half = {
            name: round(100 * (rss["end"][name] - rss["middle"][name]) / rss["middle"][name], 1)
            for name in watched
            if "middle" in rss
        }
        largest = max((r["rows"] for r in trainer_rounds), default=0)
        full = [r["peak_rss_mb"] for r in trainer_rounds if r["rows"] == largest]
        return {
            "requests": total,
            "sent": sent,
            "answered": len(answered),
            "lost": total - len(answered),
            "duplicates": duplicates,
            "rate_target_per_s": args.rate,
            "retrain_every": args.retrain_every,
            "label_delay_s": args.label_delay,
            "retrains_requested": expected,
            "rounds_completed": rounds,
            "rounds_failed_and_retried": failed_rounds,
            "promotions_announced": promotions,
            "wall_s": round(wall, 1),
            "throughput_per_10pct": throughput,
            "rss_mb": rss,
            "store": args.store,
            "retain": args.retain or None,
            "store_per_10pct": store_per_10pct,
            "store_after_settle": self.store_size(),
            "rss_mb_per_10pct": rss_per_10pct,
            "predictor_rss_mb_at_promotions": rss_at_promotions,
            "rss_growth_pct_start_to_end": growth,
            "rss_growth_pct_warm_to_end": growth_after_warmup,
            "rss_growth_pct_middle_to_end": growth_second_half,
            "trainer_rounds": trainer_rounds,
            # the peak of each round on a full window, first to last
            "trainer_peak_growth_pct_full_windows": (
                round(100 * (full[-1] - full[0]) / full[0], 1) if len(full) > 1 else None
            ),
            "machine": (
                f"{os.cpu_count()} cores ({platform.machine()}), shared with other engineers' "
                "jobs while it ran; broker, MLflow and PostgreSQL on the same cores"
            ),
        }


@contextlib.contextmanager
def _admin(url: str) -> Any:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as db:
            yield db
    finally:
        engine.dispose()


def table(result: dict[str, Any]) -> str:
    lines = [
        f"requests {result['requests']}  sent {result['sent']}  answered {result['answered']}  "
        f"lost {result['lost']}  duplicates {result['duplicates']}  wall {result['wall_s']} s",
        f"retrains: requested {result['retrains_requested']}, rounds completed "
        f"{result['rounds_completed']}, promotions {result['promotions_announced']}",
        "",
        f"{'service':<10} {'RSS start':>10} {'at 10 %':>8} {'middle':>8} {'end':>8} "
        f"{'growth':>8} {'from 10 %':>10}",
    ]
    rss = result["rss_mb"]
    for name in rss["start"]:
        lines.append(
            f"{name:<10} {rss['start'][name]:>8.1f}MB {rss.get('warm', {}).get(name, 0):>6.1f}MB "
            f"{rss.get('middle', {}).get(name, 0):>6.1f}MB {rss['end'][name]:>6.1f}MB "
            f"{result['rss_growth_pct_start_to_end'][name]:>7.1f}% "
            f"{result['rss_growth_pct_warm_to_end'].get(name, 0):>9.1f}%"
        )
    if "after_settle" in rss:
        lines.append(
            "after the last round (stream over, last model compiled): "
            + ", ".join(f"{n} {mb:.1f}MB" for n, mb in rss["after_settle"].items())
        )
    if result.get("predictor_rss_mb_at_promotions"):
        lines.append(
            "predictor RSS as each promotion is announced: "
            + ", ".join(
                f"v{p['version']} {p['predictor']:.1f}MB"
                for p in result["predictor_rss_mb_at_promotions"]
            )
        )
    if result.get("trainer_rounds"):
        lines.append(
            "trainer peak RSS per round (rows): "
            + ", ".join(f"{r['peak_rss_mb']:.1f}MB ({r['rows']})" for r in result["trainer_rounds"])
            + f"; full windows, first to last: {result['trainer_peak_growth_pct_full_windows']} %"
        )
    sizes = result.get("store_per_10pct") or []
    if len(sizes) == 10:
        lines.append(
            f"observation store ({result['store']}, retain {result['retain']}) rows / MB at "
            + ", ".join(
                f"{label} {sizes[i]['rows']} / {sizes[i]['bytes'] / 1e6:.1f}"
                for label, i in (("10 %", 0), ("50 %", 4), ("end", 9))
            )
            + "; per 10 %: "
            + " ".join(str(s["rows"]) for s in sizes)
        )
    lines += [
        "",
        "throughput per 10 % of the run (answered/s): "
        + ", ".join(f"{t:.0f}" for t in result["throughput_per_10pct"]),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second")
    parser.add_argument(
        "--retrain-every", type=int, help="labelled observations per retrain (requests / 4)"
    )
    parser.add_argument("--label-delay", type=float, default=1.0)
    parser.add_argument(
        "--train-window",
        type=int,
        help="the trainer's train_window (default its own, 200,000): a smaller one makes "
        "rounds quicker and models of one size, for many promotions in a short run",
    )
    parser.add_argument("--max-evals", type=int, default=2, help="trials per round")
    parser.add_argument("--bus", default="kafka://127.0.0.1:9092")
    parser.add_argument("--tracking-uri", default="http://127.0.0.1:5000")
    parser.add_argument("--timeout", type=float, default=120.0, help="wait for stragglers")
    parser.add_argument("--settle", type=float, default=300.0, help="wait for the last round")
    parser.add_argument(
        "--noop",
        action="store_true",
        help="also run the no-op confluent-kafka loop on the stream: its RSS as a yardstick",
    )
    parser.add_argument("--retain", default="", help="the recorder's --retain (default: none)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://streamfit:streamfit@127.0.0.1:5432/streamfit"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    args.retrain_every = args.retrain_every or max(args.requests // 4, 1)
    soak = Soak(args)
    try:
        result = soak.run()
    finally:
        soak.stop()
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out} (logs in {soak.root})")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
