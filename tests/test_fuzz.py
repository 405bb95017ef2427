"""Issue 14: fuzzing the boundary. Any generated run config, comparison config, -o
option, model.json, safetensors header or IDX header is either accepted or refused
with a ``PrunekitError`` (the CLI's one `error:` line, exit 2) -- never another
exception, never a traceback. Bounded example counts keep the suite fast."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_COMPARISON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit import RunConfig
from prunekit._idx import read_idx
from prunekit.experiments.plan import _TOP_KEYS, config_from_dict
from prunekit.models import MODELS, create_model
from prunekit.pipeline import validate
from prunekit.pruning.methods import METHODS
from prunekit.registry import PrunekitError
from prunekit.storage.modelfile import read_header
from prunekit.storage.saving import load, save_run

# PRUNEKIT_FUZZ_SCALE=10 for a deeper run; CI runs the bounded default.
SCALE = float(os.environ.get("PRUNEKIT_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=int(60 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**13), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from([0, 1, 2, 0.5, 0.9, -1, "all", "weight", "neuron", "global", "nm"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
RUN_KEYS = [f.name for f in fields(RunConfig)]
OPTION_KEYS = [
    "lam",
    "cycles",
    "round_to",
    "n",
    "m",
    "update",
    "target_sparsity",
    "sigma",
    "density",
    "x",
]


def run_value(key: str) -> st.SearchStrategy:
    """Mostly plausible values for a key (so the checks behind the first one run), with
    arbitrary ones mixed in."""
    plausible = {
        "model": st.sampled_from(MODELS.names()),
        "method": st.sampled_from(METHODS.names()),
        "dataset": st.sampled_from(["synthetic", "digits", "nope"]),
        "method_args": st.dictionaries(st.sampled_from(OPTION_KEYS), values, max_size=3),
    }.get(key)
    return st.one_of(plausible, values) if plausible is not None else values


run_configs = st.lists(st.sampled_from(RUN_KEYS + ["nope"]), max_size=5, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: run_value(k) for k in keys})
)


@FUZZ
@given(run_configs)
def test_fuzz_run_schema(data: dict) -> None:
    with contextlib.suppress(PrunekitError):
        validate(RunConfig.from_dict(data))


@FUZZ
@given(st.lists(st.text(max_size=12), max_size=4))
def test_fuzz_option_parsing(items: list[str]) -> None:
    from prunekit.cli import parse_options

    with contextlib.suppress(PrunekitError):
        parse_options(items)


compare_configs = st.lists(st.sampled_from(list(_TOP_KEYS)), max_size=4, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: values for k in keys})
)


@settings(FUZZ, max_examples=int(40 * SCALE))
@given(compare_configs)
def test_fuzz_comparison_config(over: dict) -> None:
    with contextlib.suppress(PrunekitError):
        config_from_dict({**TINY_COMPARISON, **over})


@pytest.fixture(scope="module")
def saved_run() -> Path:
    root = Path(tempfile.mkdtemp())
    save_run(root / "run", {"v": 1}, create_model("lenet300"), {"name": "lenet300", "kwargs": {}})
    yield root / "run"
    shutil.rmtree(root)


spec_changes = st.dictionaries(
    st.sampled_from(["name", "kwargs", "input_shape", "shapes", "format"]), values, max_size=2
) | st.fixed_dictionaries(
    {
        "kwargs": st.dictionaries(
            st.sampled_from(
                ["hidden", "in_channels", "input_size", "num_classes", "mean", "std", "zz"]
            ),
            values,
            max_size=2,
        )
    }
)


@settings(FUZZ, max_examples=int(40 * SCALE))
@given(spec_changes)
def test_fuzz_model_json(saved_run: Path, change: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        shutil.copytree(saved_run, run_dir)
        spec = json.loads((run_dir / "model.json").read_text())
        spec.update(change)
        (run_dir / "model.json").write_text(json.dumps(spec))
        (run_dir / "result.json").write_text("{}")  # no checksums: reach the other checks
        with contextlib.suppress(PrunekitError):
            load(run_dir)


@settings(FUZZ, max_examples=int(80 * SCALE))
@given(st.binary(max_size=64), st.dictionaries(st.text(max_size=8), values, max_size=3))
def test_fuzz_safetensors_header(tail: bytes, header: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        blob = json.dumps(header).encode()
        path.write_bytes(len(blob).to_bytes(8, "little") + blob + tail)
        with contextlib.suppress(PrunekitError):
            read_header(path)
        path.write_bytes(tail)
        with contextlib.suppress(PrunekitError):
            read_header(path)


@settings(FUZZ, max_examples=int(120 * SCALE))
@given(
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 4), max_size=5),
    st.binary(max_size=64),
    st.booleans(),
)
def test_fuzz_idx_header(code: int, dims: list[int], data: bytes, bad_magic: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.idx"
        magic = b"\x00\x01" if bad_magic else b"\x00\x00"
        path.write_bytes(
            magic + bytes([code, len(dims)]) + np.asarray(dims, ">u4").tobytes() + data
        )
        with contextlib.suppress(PrunekitError):
            read_idx(path)
