"""Tests for prunekit.data: IDX codec, discovery, download, splits and datasets."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunekit import data
from prunekit.data import (
    DATASETS,
    IDX_FILES,
    Split,
    idx_files,
    iterate_batches,
    load_dataset,
    read_idx,
    write_idx,
)
from prunekit.registry import PrunekitError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No test sees the real $PRUNEKIT_DATA, user cache or /usr/share (unless it opts in)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setattr(idx_files, "SYSTEM_DATA_DIRS", {})
    monkeypatch.setattr(
        idx_files, "MIRRORS", {"fashion-mnist": "http://invalid.test/", "mnist": ""}
    )


def fake_mnist(directory: Path, n_train: int = 30, n_test: int = 10, *, gz: bool = True,
               marker: int = 0) -> Path:  # fmt: skip
    """Write a tiny MNIST-format dataset; every image stores ``marker`` in pixel (0, 0)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(marker)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = marker
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return directory


def marker_of(ds: data.Dataset) -> int:
    return round(ds.train.x[0, 0, 0, 0].item() * 255)


# --- IDX codec -----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))
    ),
    compress=st.booleans(),
)
def test_idx_round_trip(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


@pytest.mark.parametrize("name, gzipped", [("x.gz", True), ("x", False), ("x.idx", False)])
def test_write_compress_none_follows_suffix(tmp_path, name, gzipped):
    write_idx(tmp_path / name, np.arange(6, dtype=np.int16).reshape(2, 3))
    assert (tmp_path.joinpath(name).read_bytes()[:2] == b"\x1f\x8b") == gzipped
    np.testing.assert_array_equal(read_idx(tmp_path / name), np.arange(6).reshape(2, 3))


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    write_idx(tmp_path / "l", np.array([[1, 2, 3]], dtype=np.int32))
    raw = (tmp_path / "l").read_bytes()
    assert raw[:4] == b"\x00\x00\x0c\x02"
    assert raw[4:12] == b"\x00\x00\x00\x01\x00\x00\x00\x03"
    assert raw[12:] == b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    write_idx(tmp_path / "compressed-without-suffix", np.arange(4, dtype=np.uint8), compress=True)
    write_idx(tmp_path / "raw-with-suffix.gz", np.arange(4, dtype=np.uint8), compress=False)
    for name in ("compressed-without-suffix", "raw-with-suffix.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), np.arange(4))


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(PrunekitError, match="cannot write dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


def _corrupt(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"bad-{kind}-idx3-ubyte"
    good = bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(12))
    blob = {
        "magic": b"\x12\x34" + good[2:],
        "dtype": good[:2] + b"\x07" + good[3:],
        "truncated": good[:-5],
        "too-long": good + b"\x00",
        "header": good[:6],
        "empty": b"",
        "gzip": gzip.compress(good)[:-10],
        "gzip-garbage": b"\x1f\x8b" + b"\x00" * 20,
    }[kind]
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("magic", "bad magic"),
        ("dtype", "dtype code"),
        ("truncated", "wrong size"),
        ("too-long", "wrong size"),
        ("header", "truncated IDX header"),
        ("empty", "too short"),
        ("gzip", "gzip"),
        ("gzip-garbage", "gzip"),
    ],
)
def test_corrupt_idx_raises_one_line_error_naming_file(tmp_path, kind, message):
    path = _corrupt(tmp_path, kind)
    with pytest.raises(PrunekitError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_prunekit_error(tmp_path):
    with pytest.raises(PrunekitError, match="nope"):
        read_idx(tmp_path / "nope")


# --- discovery -------------------------------------------------------------------


def test_discovery_order(tmp_path, monkeypatch):
    explicit = fake_mnist(tmp_path / "explicit", marker=1)
    env_root = tmp_path / "env"
    fake_mnist(env_root / "fashion-mnist", marker=2, gz=False)
    debian = fake_mnist(tmp_path / "debian", marker=3)
    cache = fake_mnist(tmp_path / "cache" / "prunekit" / "fashion-mnist", marker=4)
    monkeypatch.setenv("PRUNEKIT_DATA", str(env_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(idx_files, "SYSTEM_DATA_DIRS", {"fashion-mnist": (debian,)})

    def load(**kw):
        return load_dataset("fashion-mnist", val_fraction=0.0, **kw)

    ds = load(data_dir=explicit)
    assert marker_of(ds) == 1 and ds.source == str(explicit.resolve())
    assert marker_of(load()) == 2  # $PRUNEKIT_DATA/<name>/ with raw (non-gz) files
    monkeypatch.setenv("PRUNEKIT_DATA", str(explicit))  # the dir itself holds the files
    assert marker_of(load()) == 1
    monkeypatch.delenv("PRUNEKIT_DATA")
    assert marker_of(load()) == 3
    monkeypatch.setattr(idx_files, "SYSTEM_DATA_DIRS", {})
    assert marker_of(load()) == 4
    assert load().source == str(cache.resolve())


def test_missing_dataset_lists_every_place(tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    write_idx(partial / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    monkeypatch.setenv("PRUNEKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(idx_files, "SYSTEM_DATA_DIRS", {"fashion-mnist": (tmp_path / "deb",)})
    with pytest.raises(PrunekitError) as info:
        load_dataset("fashion-mnist", data_dir=partial)
    msg = str(info.value)
    assert "\n" not in msg
    for place in (partial, tmp_path / "env", tmp_path / "env" / "fashion-mnist", tmp_path / "deb",
                  data.cache_dir("fashion-mnist")):  # fmt: skip
        assert str(place) in msg
    assert "missing train-labels-idx1-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "--data-dir" in msg and "--download" in msg


def test_bad_contents_name_the_file(tmp_path):
    d = fake_mnist(tmp_path / "d")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.arange(11, dtype=np.uint8))  # 11 labels, 10 imgs
    with pytest.raises(PrunekitError, match="t10k-labels.*11 labels"):
        load_dataset("mnist", data_dir=d)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, dtype=np.uint8))
    with pytest.raises(PrunekitError, match=r"t10k-labels.*0\.\.9"):
        load_dataset("mnist", data_dir=d)
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((10, 27, 28), np.uint8))
    with pytest.raises(PrunekitError, match="t10k-images.*28, 28"):
        load_dataset("mnist", data_dir=d)


# --- download ----------------------------------------------------------------------


def test_download_from_local_mirror(tmp_path, monkeypatch):
    mirror = fake_mnist(tmp_path / "mirror", n_train=20, marker=7)
    monkeypatch.setitem(idx_files.MIRRORS, "mnist", mirror.as_uri() + "/")
    with pytest.raises(PrunekitError, match="not found"):
        load_dataset("mnist")
    ds = load_dataset("mnist", download=True, val_fraction=0.0)
    cache = data.cache_dir("mnist")
    assert cache.is_relative_to(Path(os.environ["XDG_CACHE_HOME"]))
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{f}.gz" for f in IDX_FILES)
    assert ds.source == str(cache.resolve()) and marker_of(ds) == 7 and len(ds.train) == 20
    assert len(load_dataset("mnist", val_fraction=0.0).train) == 20  # now found without download


def test_download_failure_is_prunekit_error(tmp_path, monkeypatch):
    monkeypatch.setitem(idx_files.MIRRORS, "mnist", (tmp_path / "no-such-mirror").as_uri() + "/")
    with pytest.raises(PrunekitError, match="could not download .*no-such-mirror") as info:
        load_dataset("mnist", download=True)
    assert "\n" not in str(info.value)
    assert not [p for p in data.cache_dir("mnist").iterdir()]  # no partial files left behind


def test_download_rejects_non_idx_payload(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in IDX_FILES:
        (mirror / f"{f}.gz").write_text("<html>not found</html>")
    monkeypatch.setitem(idx_files.MIRRORS, "mnist", mirror.as_uri() + "/")
    with pytest.raises(PrunekitError, match="not a valid IDX file"):
        load_dataset("mnist", download=True)
    assert not list(data.cache_dir("mnist").iterdir())


# --- real Fashion-MNIST -----------------------------------------------------------------


@pytest.mark.skipif(
    not all((DEBIAN_FASHION / f"{f}.gz").is_file() for f in IDX_FILES),
    reason=f"Fashion-MNIST not installed in {DEBIAN_FASHION} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(idx_files, "SYSTEM_DATA_DIRS", {"fashion-mnist": (DEBIAN_FASHION,)})
    ds = load_dataset("fashion-mnist", val_fraction=0.1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.train.x.shape == (54000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    for split in (ds.train, ds.val, ds.test):
        assert split.x.min() >= 0 and split.x.max() <= 1
        assert set(split.y.unique().tolist()) == set(range(10))
    assert 0.25 < ds.mean < 0.32 and 0.33 < ds.std < 0.37
    assert ds.source == str(DEBIAN_FASHION)
    raw = data.find_idx_files("fashion-mnist")[1]
    assert idx_files._read_idx_cached(raw) is idx_files._read_idx_cached(raw)  # in-process cache


# --- splits and batching -------------------------------------------------------------------


def test_val_split_disjoint_and_reproducible(tmp_path):
    d = fake_mnist(tmp_path / "d", n_train=50)

    def load(seed, **kw):
        return load_dataset("mnist", data_dir=d, seed=seed, val_fraction=0.2, **kw)

    a, b, c = load(0), load(0), load(1)
    assert (len(a.train), len(a.val), len(a.test)) == (40, 10, 10)
    torch.testing.assert_close(a.val.x, b.val.x)
    torch.testing.assert_close(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    rows = {tuple(r.tolist()) for r in a.train.x.flatten(1)}
    assert not rows & {tuple(r.tolist()) for r in a.val.x.flatten(1)}
    assert len(rows | {tuple(r.tolist()) for r in a.val.x.flatten(1)}) == 50
    torch.testing.assert_close(a.test.x, c.test.x)  # test split never used for val
    assert a.mean == pytest.approx(a.train.x.double().mean().item())
    assert a.std == pytest.approx(a.train.x.double().std(unbiased=False).item())
    limited = load(0, limit=20, test_limit=4)
    assert (len(limited.train) + len(limited.val), len(limited.test)) == (20, 4)
    torch.testing.assert_close(limited.test.x, a.test.x[:4])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_val_fraction_out_of_range(fraction):
    with pytest.raises(PrunekitError, match="val_fraction"):
        load_dataset("synthetic", val_fraction=fraction)


def test_bad_limits_and_options():
    with pytest.raises(PrunekitError, match="limit"):
        load_dataset("synthetic", limit=0)
    with pytest.raises(PrunekitError, match="no option.*bogus.*n_train"):
        load_dataset("synthetic", bogus=1)


def test_unknown_dataset_lists_known():
    with pytest.raises(PrunekitError) as info:
        load_dataset("cifar-100")
    for name in ("digits", "fashion-mnist", "mnist", "synthetic"):
        assert name in str(info.value)
    assert set(DATASETS.names()) >= {"digits", "fashion-mnist", "mnist", "synthetic"}


def test_iterate_batches():
    split = Split(torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10))
    batches = list(iterate_batches(split, 4, shuffle=False, generator=None))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = torch.cat([y for _, y in iterate_batches(split, 3, shuffle=True, generator=g1)])
    s2 = torch.cat([y for _, y in iterate_batches(split, 3, shuffle=True, generator=g2)])
    assert torch.equal(s1, s2) and sorted(s1.tolist()) == list(range(10))
    assert s1.tolist() != list(range(10))
    for x, y in iterate_batches(split, 3, shuffle=True, generator=g1):
        assert torch.equal(x.flatten().long(), y)
    with pytest.raises(PrunekitError, match="batch_size"):
        list(iterate_batches(split, 0, shuffle=False, generator=None))


# --- bundled and generated datasets -----------------------------------------------------------


def test_digits_shapes():
    ds = load_dataset("digits", val_fraction=0.1)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    assert len(ds.test) == round(1797 * 0.2)
    assert ds.train.x.min() >= 0 and ds.train.x.max() == 1.0
    other = load_dataset("digits", seed=5)
    torch.testing.assert_close(ds.test.x, other.test.x)  # own test split does not move
    big = load_dataset("digits", size=28, limit=100)
    assert big.input_shape == (1, 28, 28) and big.train.x.max() <= 1


def nearest_class_mean_accuracy(ds: data.Dataset) -> float:
    means = torch.stack([ds.train.x[ds.train.y == c].mean(0) for c in range(ds.num_classes)])
    pred = torch.cdist(ds.test.x.flatten(1), means.flatten(1)).argmin(1)
    return (pred == ds.test.y).float().mean().item()


def test_synthetic_shapes_and_determinism():
    ds = load_dataset("synthetic")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1800, 200, 500)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.train.x.min() >= 0 and ds.train.x.max() <= 1
    assert set(ds.test.y.tolist()) == set(range(10))
    torch.testing.assert_close(load_dataset("synthetic").train.x, ds.train.x)
    assert not torch.equal(load_dataset("synthetic", data_seed=1).test.x, ds.test.x)
    rgb = load_dataset("synthetic", input_shape=(3, 32, 32), n_train=100, n_test=20)
    assert rgb.train.x.shape == (90, 3, 32, 32) and rgb.test.x.shape == (20, 3, 32, 32)


def test_synthetic_is_learnable():
    assert nearest_class_mean_accuracy(load_dataset("synthetic")) > 0.8
