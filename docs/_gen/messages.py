"""The messages reference: every topic's JSON Schema, generated from the code when the site is
built. Where a reader decodes a topic with a msgspec struct, the schema is msgspec's for that
struct (what the reader accepts); otherwise it is inferred from the messages the module's own
encoders write, and each example is checked against the schema shown."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import msgspec

from streamfit import messages
from streamfit.config import Topics
from streamfit.training.study import Announcement

# Where the reader's struct is the contract: topic -> name of the struct in streamfit.messages.
READER_STRUCTS = {"requests": "_Request", "predictions": "_PredictionIn"}


def _examples() -> dict[str, list[dict[str, Any]]]:
    """Messages as the services write them, from streamfit.messages' encoders, per topic."""
    data = {"age": 39, "workclass": "State-gov", "education": "Bachelors", "hours_per_week": 40}
    feature = {"score": 0.62, "p_value": 1.2e-31, "psi": 0.21, "drifted": True}
    sha = "9f2c" + "0" * 60
    loads: Callable[[bytes], Any] = json.loads
    return {
        "requests": [loads(messages.request("42", data))],
        "predictions": [loads(p) for p in messages.predictions(["42"], [0.13], 3)]
        + [loads(p) for p in messages.predictions(["43"], [0.8], 3, shadow=(4, [0.7]))],
        "labels": [loads(messages.label("42", 0))],
        "dead_letter": [
            loads(messages.dead_letter("column 'age' must be a number, got string", b"{}", "42")),
            loads(messages.dead_letter("invalid JSON at character 0", b"\xff", None, "recorder")),
        ],
        "retrain": [
            loads(messages.retrain("every_n_labelled", 251, 250)),
            loads(messages.retrain("manual", 10)),
        ],
        "models": [
            loads(
                messages.model_ready(
                    3,
                    "promoted",
                    model_uri="models:/streamfit-model/3",
                    sha256=sha,
                    reason="gate: holdout log loss 0.2750 vs champion v2 0.2760",
                    metrics={"auc": 0.929, "log_loss": 0.273},
                    trigger="retrain",
                )
            ),
            loads(
                messages.model_ready(
                    4,
                    "shadow",
                    model_uri="models:/streamfit-model/4",
                    sha256=sha,
                    reason="manual",
                    by="cli",
                )
            ),
        ],
        "search": [
            loads(
                Announcement(
                    study="streamfit-round-7-3f9a1c2b4d5e6f70",
                    round_id=7,
                    budget=10,
                    data_rows=29304,
                    data_hash="3f9a1c2b4d5e6f70",
                    space_hash="a1b2c3d4e5f60718",
                    leader="trainer-1-4242",
                    run_id="0f3e" + "0" * 28,
                    dropped=[],
                    labelled_upto=1796576486.8,
                ).encode()
            )
        ],
        "drift": [
            messages.drift_event(
                window_end=4250,
                drift=0.31,
                drifted=True,
                features={"age": feature},
                sequential={
                    "drifted": False,
                    "features": [],
                    "threshold": 3.57,
                    "evidence": {"age": 2.1},
                },
                output={
                    "n": 1000,
                    "statistic": 0.04,
                    "p_value": 0.3,
                    "drifted": False,
                    "mean": 0.25,
                    "reference_mean": 0.24,
                },
                labels={
                    "n": 1000,
                    "positive_rate": 0.25,
                    "reference_rate": 0.24,
                    "p_value": 0.6,
                    "drifted": False,
                },
            ),
            messages.drift_event(
                window_end=10, drift=None, drifted=False, features={}, sequential={}
            ),
        ],
    }


def _example_contract() -> Any:
    """The bundled example's feature contract (UCI Adult), when this streamfit has contracts."""
    try:
        from streamfit.datasets.adult import CONTRACT
    except ImportError:
        return None
    return CONTRACT


def _request_schema(contract: Any) -> dict[str, Any]:
    """A request's JSON Schema: its id, and ``data`` as the served model's contract says."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "minLength": 1},
            "data": contract.json_schema(),
        },
        "required": ["request_id", "data"],
    }


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def infer(values: list[Any]) -> dict[str, Any]:
    """A JSON Schema every one of ``values`` satisfies: the types seen, and for objects the
    properties seen in any (required: those in all)."""
    types = sorted({_type(v) for v in values})
    if "integer" in types and "number" in types:
        types.remove("integer")
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    objects = [v for v in values if isinstance(v, dict)]
    if objects:
        keys = list(dict.fromkeys(k for o in objects for k in o))
        if any(o for o in objects) and all(set(o) for o in objects) and len(keys) > 0:
            schema["properties"] = {k: infer([o[k] for o in objects if k in o]) for k in keys}
            schema["required"] = [k for k in keys if all(k in o for o in objects)]
    arrays = [item for v in values if isinstance(v, list) for item in v]
    if arrays:
        schema["items"] = infer(arrays)
    return schema


def _descriptions() -> dict[str, str]:
    """The module docstring's description of each topic's message."""
    text = (messages.__doc__ or "").split("\n\n", 1)[-1]
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[a-z_]+ {2,})", "\n" + text):
        if block.strip():
            name, _, rest = block.strip().partition(" ")
            found[name] = " ".join(rest.split())
    return found


def messages_page() -> str:
    examples = _examples()
    described = _descriptions()
    topics = [f.name for f in dataclasses.fields(Topics)]
    missing = set(topics) - set(examples)
    if missing:
        raise RuntimeError(f"docs/_gen/messages.py has no example message for topics {missing}")
    lines = [
        "# Messages",
        "",
        "Generated from `streamfit.messages` when the site is built. Every message is plain"
        " JSON, so any Kafka client can take part. A request's `data` follows the served"
        " model's feature contract: shown here for the bundled example (UCI Adult); for your"
        " model, `streamfit contract show --format jsonschema` prints it. For `predictions`"
        " the schema is the one the recorder decodes with (msgspec's JSON Schema of its struct);"
        " for the other topics it is inferred from the messages streamfit's own encoders write,"
        " and each example below is checked against it when the site is built. A message a"
        " service cannot read goes to `dead_letter` with the reason.",
        "",
        "| topic (setting) | written by | the message |",
        "|---|---|---|",
    ]
    writers = {
        "requests": "your app",
        "predictions": "predictor",
        "labels": "your app",
        "dead_letter": "predictor, recorder",
        "retrain": "recorder",
        "models": "trainer, `init`, `promote`, `rollback`, `shadow`",
        "drift": "monitor",
        "search": "trainer (a shared search's leader: its round's study, for the others to join)",
    }
    for topic in topics:
        lines.append(
            f"| [`{topic}`](#{topic}) (`topics.{topic}`) | {writers.get(topic, '')} | "
            f"{described.get(topic, '').replace('|', '/')[:160]}… |"
        )
    for topic in topics:
        struct = READER_STRUCTS.get(topic)
        if topic == "requests" and _example_contract() is not None:
            schema = _request_schema(_example_contract())
            how = "the bundled example's contract (`Contract.json_schema()`) under `data`"
        elif struct and hasattr(messages, struct):
            schema = msgspec.json.schema(getattr(messages, struct))
            how = f"msgspec's schema of `streamfit.messages.{struct}`, what the reader accepts"
        else:
            schema = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                **infer(examples[topic]),
            }
            how = "inferred from the messages streamfit's encoders write"
        for example in examples[topic]:
            jsonschema.validate(example, schema)
        lines += [
            "",
            f"## `{topic}` {{#{topic}}}",
            "",
            described.get(topic, ""),
            "",
            "Example" + ("s" if len(examples[topic]) > 1 else "") + ":",
            "",
            "```json",
            *(json.dumps(e) for e in examples[topic]),
            "```",
            "",
            f'??? note "JSON Schema ({how})"',
            "",
            "    ```json",
            *("    " + line for line in json.dumps(schema, indent=2).splitlines()),
            "    ```",
        ]
    return "\n".join(lines) + "\n"
