"""The native hot path (src/streamfit/_native.c) against the reference, msgspec.

The request decoder against msgspec then the pipeline: what it decodes, it decodes bit for bit
as the reference does; what it declines, the reference decodes or rejects (so no message is ever
judged by the native decoder alone). The prediction encoder: byte for byte msgspec's messages
(binary) or the Python writer's (every task), which say what the task's rules say."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfit import messages
from streamfit._native import encode_rows
from streamfit.contract import ColumnSpec, Contract, task_of
from streamfit.datasets.adult import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS, load_adult
from streamfit.datasets.adult import CONTRACT as ADULT
from streamfit.features import FeaturePipeline, request_schema
from tests.fuzz.cases import CORPUS
from tests.fuzz.cases import requests as hostile_requests

SCHEMA = request_schema(ADULT)
SIZE = ColumnSpec("size", "numeric", "float")

# Number texts where a decoder could round differently from msgspec and NumPy: exact in int64 or
# not, Clinger's fast path or strtod, subnormal, the largest double, a negative zero.
TRICKY_NUMBERS = [
    "0", "-0", "-0.0", "0.1", "0.30000000000000004", "1E2", "1e+2", "1e-5", "3.141592653589793",
    "123456789012345678", "-999999999999999999", "18446744073709551615", "-9999999999999999999",
    "123456789012345678901234567890", "9007199254740993", "9007199254740993.0", "1e23",
    "100000000000000000000000.0", "1.7976931348623157e308", "2.2250738585072014e-308", "4.9e-324",
    "1e-400", "-1e-400", "2.4703282292062328e-324", "8.589973e9", "0.000001234567890123456789",
    "12345678901234567890.5",
]  # fmt: skip
SPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])


@pytest.fixture(scope="module")
def pipeline():
    return FeaturePipeline(ADULT, min_cross_count=1).fit(load_adult("train"))


def _bits(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix).view(np.uint64)


def _assert_as_reference(values: list[bytes], pipeline: FeaturePipeline) -> bool:
    """True when the native decoder took the batch (and agreed with the reference)."""
    native = messages._decode_natively(values, pipeline)
    if native is None:
        return False
    reference = messages.parse_requests(values, schema=request_schema(pipeline.contract))
    assert reference.rejected == []
    ids, matrix = native
    assert ids == reference.ids
    assert np.array_equal(_bits(matrix), _bits(pipeline.transform(reference.columns)))
    return True


@st.composite
def request_texts(draw: st.DrawFn) -> bytes:
    """Valid requests as any JSON writer might spell them: keys in any order, any whitespace,
    numbers as integers, shortest floats or tricky texts, nulls, absent columns, unseen
    categories, the true label riding along."""
    fields = []
    for name in draw(st.permutations([*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, LABEL_COLUMN])):
        if draw(st.integers(0, 4)) == 0:
            continue  # absent
        if name in NUMERIC_COLUMNS:
            value = draw(
                st.just("null")
                | st.integers(-(10**18), 10**18).map(str)
                | st.floats(allow_nan=False, allow_infinity=False).map(repr)
                | st.sampled_from(TRICKY_NUMBERS)
            )
        elif name in CATEGORICAL_COLUMNS:
            value = json.dumps(draw(st.sampled_from(["Private", "Bachelors", "Male", "?", "new"])))
        else:
            value = draw(st.sampled_from(['">50K"', '"<=50K"', "1", "0", "null", "true"]))
        fields.append(f'"{name}"{draw(SPACE)}:{draw(SPACE)}{value}')
    data = "{" + draw(SPACE) + f",{draw(SPACE)}".join(fields) + draw(SPACE) + "}"
    request_id = json.dumps(draw(st.text("abcXYZ-_:0123456789 ", min_size=1, max_size=40)))
    parts = [f'"request_id":{draw(SPACE)}{request_id}', f'"data":{draw(SPACE)}{data}']
    if draw(st.booleans()):
        parts.reverse()
    text = draw(SPACE) + "{" + f",{draw(SPACE)}".join(parts) + "}" + draw(SPACE)
    return text.encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(request_texts(), min_size=1, max_size=20))
def test_valid_requests_are_decoded_natively_as_the_reference_decodes_them(pipeline, values):
    assert _assert_as_reference(values, pipeline)


@settings(max_examples=400, deadline=None)
@given(st.lists(hostile_requests(), min_size=1, max_size=5))
def test_whatever_the_native_decoder_takes_the_reference_takes_alike(pipeline, values):
    _assert_as_reference(values, pipeline)


def test_every_adult_test_row_is_decoded_natively_as_the_reference_does(pipeline):
    frame = load_adult("test")
    rows = frame[[*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, LABEL_COLUMN]].to_dict("records")
    values = [
        messages.request(f"r{i}", {k: None if v != v else v for k, v in row.items()})
        for i, row in enumerate(rows)
    ]
    assert _assert_as_reference(values, pipeline)


@pytest.mark.parametrize(
    "value",
    [
        b'{"request_id": "esc\\u0041ped", "data": {}}',  # an escape: msgspec's to unescape
        b'{"request_id": "r", "data": {"workclass": "Priv\\u0061te"}}',
        '{"request_id": "r", "data": {"workclass": "Privé"}}'.encode(),  # not ASCII
        b'{"request_id": "r", "data": {"age": 40, "age": 41}}',  # a key twice
        b'{"request_id": "r", "data": {}, "extra": 1}',  # a key msgspec would skip
        b'{"request_id": "r", "data": {"age": 1e400}}',
        b'{"request_id": "r", "data": {"age": 01}}',
        b'{"request_id": "r", "data": {"age": 40}} trailing',
        b'{"request_id": "r", "data": {"income_bracket": {"nested": 1}}}',
        b'{"request_id": "r", "data": {"age": 40,}}',
    ],
)
def test_what_the_native_decoder_declines_goes_to_the_reference(pipeline, value):
    """Declined, so the reference decodes it or words its rejection, as before."""
    assert messages._decode_natively([value], pipeline) is None
    batch = messages.parse_requests([value], pipeline)
    assert batch.native is None
    assert batch.ids + [str(e) for _, e in batch.rejected] == [
        *messages.parse_requests([value], schema=SCHEMA).ids,
        *(str(e) for _, e in messages.parse_requests([value], schema=SCHEMA).rejected),
    ]


@pytest.mark.parametrize("value", CORPUS)
def test_the_hostile_corpus_is_decoded_as_the_reference_does_or_declined(pipeline, value):
    _assert_as_reference([value], pipeline)


def test_one_declined_message_sends_its_whole_batch_to_the_reference(pipeline):
    good = messages.request("good", {"age": 40, "workclass": "Private"})
    batch = messages.parse_requests([good, b'{"request_id": "bad"}', good], pipeline)
    assert batch.native is None and batch.ids == ["good", "good"]
    assert [position for position, _ in batch.rejected] == [1]


def test_a_challengers_pipeline_gets_its_own_codes(pipeline):
    """A batch decoded for the champion, asked for another pipeline's matrix (a shadowed
    challenger's, fitted on other data): decoded again with that pipeline's categories."""
    frame = load_adult("test")
    other = FeaturePipeline(ADULT, min_cross_count=1).fit(frame.iloc[:300])
    rows = frame[[*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS]].iloc[:200].to_dict("records")
    values = [
        messages.request(f"r{i}", {k: None if v != v else v for k, v in row.items()})
        for i, row in enumerate(rows)
    ]
    batch = messages.parse_requests(values, pipeline)
    assert batch.native is not None
    reference = messages.parse_requests(values, schema=SCHEMA)
    for each in (pipeline, other):
        assert np.array_equal(_bits(batch.features(each)), _bits(each.transform(reference.columns)))
    assert not np.array_equal(batch.features(pipeline), batch.features(other), equal_nan=True)


# Categories that are not text (issue 22): a year and sizes of numbers, a boolean, beside text;
# the year crossed with the boolean, so the codes reach the crosses too.
LEVELS = Contract(
    "binary",
    "y",
    (
        ColumnSpec("x", "numeric", "float", required=False),
        ColumnSpec("year", "categorical", "integer", levels=(2007, 2008, 2009)),
        ColumnSpec("flag", "categorical", "boolean", required=False, levels=(True, False)),
        ColumnSpec("size", "categorical", "float", required=False, levels=(0, 1, 2.5, 1e16, 3.0)),
        ColumnSpec("island", "categorical", "string", required=False, levels=("Dream", "Biscoe")),
    ),
    classes=(0, 1),
    positive_class=1,
    crosses=(("year", "flag"),),
)
# Spellings of a level, of another value of the column's type, of a value msgspec refuses for it.
YEARS = ["2007", "2008", "2009", "2010", "1", "0", "-0", "-2007", "2007.0", "2.007e3", "20070e-1",
         '"2007"', "true", "123456789012345678901234567890", "1e400"]  # fmt: skip
FLAGS = ["true", "false", "1", "0", "1.0", '"true"', "null"]
SIZES = ["0", "-0", "0.0", "1", "1.0", "2.5", "2.50", "25e-1", "1e16", "1e+16",
         "10000000000000000", "3", "3.0", "-1", "4", "0.1", "true", '"1"', "null"]  # fmt: skip
ISLANDS = ['"Dream"', '"Biscoe"', '"Torgersen"', '""', "2007", "null"]


@pytest.fixture(scope="module")
def leveled():
    return FeaturePipeline(LEVELS, min_cross_count=1).fit(
        {
            "x": [float(i) for i in range(12)],
            "year": [2007, 2008, 2009] * 4,
            "flag": [True, False, None] * 4,
            "size": [0, 1, 2.5, 10**16, None, 3.0] * 2,
            "island": ["Dream", "Biscoe", "Dream", None] * 3,
        }
    )


@st.composite
def leveled_texts(draw: st.DrawFn, ordinary: bool = False) -> bytes:
    """Requests of LEVELS: with ``ordinary``, only what producers send (levels, unseen integers
    and text, null, absent optional columns), else any spelling, valid for msgspec or not."""
    integers = st.integers(-(10**20), 10**20).map(str)
    if ordinary:
        choices = {
            "x": st.sampled_from(["1.5", "-3", "null"]),
            "year": st.sampled_from(["2007", "2008", "2009", "2010"]) | integers,
            "flag": st.sampled_from(["true", "false", "null"]),
            "size": st.sampled_from(["1", "2.5", "1e16", "3", "null"]) | integers,
            "island": st.text("abcDXYZ -", max_size=12).map(json.dumps) | st.just("null"),
            "y": st.sampled_from(["0", "1", "null"]),
        }
    else:
        floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
        choices = {
            "x": st.sampled_from(["1.5", "null", "true"]),
            "year": st.sampled_from([*YEARS, "null"]) | integers,
            "flag": st.sampled_from(FLAGS),
            "size": st.sampled_from(SIZES) | integers | floats,
            "island": st.sampled_from(ISLANDS),
            "y": st.sampled_from(["0", "1", "null", '"yes"']),
        }
    fields = [
        f'"{name}":{draw(SPACE)}{draw(choices[name])}'
        for name in draw(st.permutations(list(choices)))
        if (ordinary and name == "year") or draw(st.integers(0, 4))  # else absent
    ]
    request_id = json.dumps(draw(st.text("abc-0123", min_size=1, max_size=8)))
    return f'{{"request_id": {request_id}, "data": {{{", ".join(fields)}}}}}'.encode()


@settings(max_examples=400, deadline=None)
@given(st.lists(leveled_texts(), min_size=1, max_size=4))
def test_categories_of_numbers_and_booleans_decode_natively_as_the_reference(leveled, values):
    """Any spelling of a year, a size or a flag: decoded natively as msgspec and the pipeline
    decode it, or declined (and then decoded, or refused, by the reference alone)."""
    _assert_as_reference(values, leveled)


@settings(max_examples=200, deadline=None)
@given(st.lists(leveled_texts(ordinary=True), min_size=1, max_size=20))
def test_ordinary_requests_of_such_categories_stay_on_the_native_path(leveled, values):
    """Levels, unseen integers (a new year), booleans, text, null: the C decoder takes them."""
    assert _assert_as_reference(values, leveled)


def test_a_category_is_its_level_s_code_whatever_its_type(leveled):
    decoder = leveled.row_decoder("request_id", "data")
    assert decoder is not None
    data = '{"year": 2008, "flag": false, "size": 2.5, "island": "Biscoe"}'
    unseen = '{"year": 1999, "flag": null, "size": 7, "island": "Torgersen"}'
    raw = np.empty((2, leveled.raw_width))
    ids = decoder.decode([f'{{"request_id": "{i}", "data": {d}}}'.encode() for i, d in
                          (("a", data), ("b", unseen))], raw)  # fmt: skip
    assert ids == ["a", "b"]
    levels = [leveled.categories[name] for name in leveled.categorical_columns]
    assert raw[0, 1:5].tolist() == [
        levels[0].index(2008),
        levels[1].index(False),
        levels[2].index(2.5),
        levels[3].index("Biscoe"),
    ]
    assert np.isnan(raw[1, 1:5]).all()


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        ('{"year": 2007.0}', "column 'year' must be an integer, got float"),
        ('{"year": "2007"}', "column 'year' must be an integer, got str"),
        ('{"year": 2007, "flag": 1}', "column 'flag' must be true or false, got int"),
        ('{"year": 2007, "island": 2007}', "column 'island' must be a string, got int"),
        ('{"year": -0}', "r"),  # 0, spelt otherwise than str(0): msgspec's to read
        ('{"year": 2007, "size": 2.50}', "r"),  # 2.5: the reference's code
        ('{"year": 2007, "size": 1.0}', "r"),  # 1.0 == 1: the level 1's code, as a dict says
    ],
)
def test_a_spelling_the_table_lacks_goes_to_the_reference(leveled, data, outcome):
    value = f'{{"request_id": "r", "data": {data}}}'.encode()
    assert messages._decode_natively([value], leveled) is None
    batch = messages.parse_requests([value], leveled)
    assert batch.ids + [str(e) for _, e in batch.rejected] == [outcome]
    if batch.ids:
        reference = messages.parse_requests([value], schema=request_schema(LEVELS))
        assert np.array_equal(
            batch.features(leveled), leveled.transform(reference.columns), equal_nan=True
        )


def _reference_predictions(ids, probabilities, version):
    return [
        messages._encode(messages._Prediction(i, p, int(p >= 0.5), version))
        for i, p in zip(ids, probabilities, strict=True)
    ]


def _plain(ids):
    return all(i.isascii() and i.isprintable() and not set(i) & {'"', "\\"} for i in ids)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.text(max_size=30), st.floats()), max_size=30),
    st.integers(0, 2**62),
)
def test_predictions_are_encoded_byte_for_byte_as_msgspec_encodes_them(rows, version):
    ids = [i for i, _ in rows]
    probabilities = [p for _, p in rows]
    reference = _reference_predictions(ids, probabilities, version)
    assert messages.predictions(ids, probabilities, version) == reference
    keys, tails = messages._layout(np.array(probabilities, dtype=float), version, None)
    native = encode_rows(ids, messages._encode(probabilities), keys, tails)
    # Ids that JSON must escape are msgspec's to write: declined.
    assert native == (reference if _plain(ids) else None)


CLASSES = st.lists(
    st.one_of(st.text(max_size=12), st.integers(-(2**40), 2**40)),
    min_size=2,
    max_size=6,
    unique=True,
)


@settings(max_examples=200, deadline=None)
@given(st.data(), CLASSES, st.integers(0, 2**62))
def test_every_task_s_predictions_say_what_its_rules_say(data, classes, version):
    """Multiclass and regression: the native encoder writes what the Python writer writes, byte
    for byte, and each message, read back, is the request id, the task's fields
    (``rules.predictions``) and the version."""
    contracts = {
        "multiclass": Contract("multiclass", "y", (SIZE,), classes=tuple(classes)),
        "regression": Contract("regression", "y", (SIZE,)),
    }
    ids = data.draw(st.lists(st.text(max_size=20), max_size=20))
    for task, contract in contracts.items():
        rules = task_of(contract)
        shape = (len(ids), len(classes)) if task == "multiclass" else (len(ids),)
        numbers = st.floats(0, 1) if task == "multiclass" else st.floats(-1e300, 1e300)
        outputs = np.array(
            data.draw(st.lists(numbers, min_size=math.prod(shape), max_size=math.prod(shape))),
            dtype=float,
        ).reshape(shape)
        encoded = messages.predictions(ids, outputs, version, rules=rules)
        keys, tails = messages._layout(outputs, version, rules)
        flat = outputs.ravel().tolist()
        written = messages._encode_rows(ids, flat, keys, tails)
        assert encoded == written
        native = encode_rows(ids, messages._encode(flat), keys, tails)
        assert native == (written if _plain(ids) else None)
        expected = [
            {"request_id": i, **fields, "model_version": version}
            for i, fields in zip(ids, rules.predictions(outputs), strict=True)
        ]
        assert [json.loads(value) for value in encoded] == expected


def test_a_batch_with_no_prediction_left_encodes_to_nothing():
    """Every row of a batch dead-lettered: no outputs at all, whatever the task's shape."""
    for contract in (
        Contract("multiclass", "y", (SIZE,), classes=("a", "b")),
        Contract("regression", "y", (SIZE,)),
        None,
    ):
        rules = None if contract is None else task_of(contract)
        assert messages.predictions([], [], 1, rules=rules) == []


def test_the_encoder_declines_input_not_as_described():
    ids, keys, tails = ["a", "b"], [b',"p":'], [b"}", b"}"]
    for texts in (b"[0.25]", b"[0.25,0.75,1.0]", b"0.25,0.75", b"[0.25,0.75]x", b"[0.25,]"):
        assert encode_rows(ids, texts, keys, tails) is None
    assert encode_rows(ids, b"[1,2,3,4]", [b',"a":', b',"b":'], tails) == [
        b'{"request_id":"a","a":1,"b":2}',
        b'{"request_id":"b","a":3,"b":4}',
    ]
    assert encode_rows(ids, b"[1,2,3]", [b',"a":', b',"b":'], tails) is None
    assert encode_rows([], b"[]", keys, []) == []
    with pytest.raises(ValueError, match="a tail for each id"):
        encode_rows(ids, b"[0.5,0.5]", keys, [b"}"])
    with pytest.raises(TypeError, match="bytes"):
        encode_rows(ids, b"[0.5,0.5]", ["p"], tails)
