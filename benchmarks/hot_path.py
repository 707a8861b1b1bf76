"""The predictor's in-process hot path alone, for a profiler: ``Predictor.process`` over batches
of Adult requests (decode, validate, transform, predict, encode, produce to a null producer) for
``--seconds``, then its rows/s and the model's own share.

    streamfit init --data-dir /tmp/model --max-evals 2      # once: a champion to serve
    py-spy record --native -o profile.svg -- \\
        python benchmarks/hot_path.py --model-dir /tmp/model --seconds 20

The model is served as the predictor serves it (compiled once its compiler thread is done;
``--lightgbm``: LightGBM only), so the profile shows what is left after the model. CPU times
are this thread's (``time.thread_time``): the model's own worker threads are not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a quiet terminal
sys.path.insert(0, str(REPO / "src"))  # run from a fresh clone without installing

from streamfit import messages  # noqa: E402
from streamfit.bus import MemoryBus, Message, Producer  # noqa: E402
from streamfit.config import Settings  # noqa: E402
from streamfit.datasets.adult import requests as adult_requests  # noqa: E402
from streamfit.features import request_schema  # noqa: E402
from streamfit.models.registry import ModelRegistry  # noqa: E402
from streamfit.serving import Predictor  # noqa: E402


class NullProducer(Producer):
    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="data dir with a champion")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--lightgbm", action="store_true", help="serve with LightGBM only")
    args = parser.parse_args(argv)
    template = Settings(data_dir=args.model_dir)
    with tempfile.TemporaryDirectory(prefix="streamfit-hot-path-") as tmp:
        settings = Settings(
            data_dir=Path(tmp), tracking_uri=template.mlflow_uri, compile_model=not args.lightgbm
        )
        champion = ModelRegistry.from_settings(settings).champion()
        if champion is None:
            parser.error(f"no champion in {args.model_dir} (run streamfit init first)")
        predictor = Predictor(settings, MemoryBus())
        predictor.swap_to(champion.version)
        predictor.wait_for_compile(900)
        rows = [
            {k: v for k, v in row.items() if k != "income_bracket"}
            for row in adult_requests(20_000, seed=7)
        ]
        stamp = time.time()
        batches = [
            [
                Message(
                    "requests",
                    messages.request(f"r{i + j}", rows[(i + j) % len(rows)]),
                    None,
                    0,
                    i + j,
                    stamp,
                )
                for j in range(args.batch)
            ]
            for i in range(0, 20 * args.batch, args.batch)
        ]
        producer = NullProducer()
        predictor.process(batches[0], producer)  # warm every path
        done, start, cpu = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - start < args.seconds:
            for batch in batches:
                predictor.process(batch, producer)
                done += len(batch)
        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
        # The model alone on the same rows (this thread's CPU time, as above: other processes'
        # load counts less); what is left is the Python around it (decode, validate,
        # transform, encode, produce, metrics).
        bundle = predictor.slot.bundle
        assert bundle is not None
        matrices = [
            bundle.pipeline.transform(
                messages.parse_requests(
                    [m.value for m in b], schema=request_schema(bundle.contract)
                ).columns
            )
            for b in batches
        ]
        model_rows, model_cpu = 0, time.thread_time()
        while model_rows < done:
            for matrix in matrices:
                bundle.predict_matrix(matrix)
                model_rows += len(matrix)
        model_us = (time.thread_time() - model_cpu) / model_rows * 1e6
        total_us = cpu / done * 1e6
        served = "compiled" if predictor.serving_compiled else "LightGBM"
        print(
            f"{done / elapsed:,.0f} rows/s wall; CPU per row {total_us:.2f} us, of which the "
            f"model ({served}) {model_us:.2f} us and the rest {total_us - model_us:.2f} us "
            f"(batches of {args.batch})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
