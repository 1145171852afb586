"""Tests for validate.data: the corpora, their splits, batches, caching and error messages.

The stdlib corpus is built with a small byte cap into tmp_path, so the file runs in a
second or two and never touches the user's cache.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import validate.data as data
from validate.data import (
    BYTE_VOCAB_SIZE,
    VAL_FRACTION,
    DataError,
    Document,
    TokenDataset,
    open_dataset,
    split_documents,
    stdlib_cache_dir,
    stdlib_documents,
    token_stream_hash,
)

CAP = 300_000


def _stdlib(cache_dir: Path) -> TokenDataset:
    return open_dataset(cache_dir=cache_dir, max_bytes=CAP)


def _cache_files(cache_dir: Path) -> dict[str, bytes]:
    directory = stdlib_cache_dir(cache_dir, CAP)
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _counting_dataset(n_train: int = 1000, n_val: int = 200) -> TokenDataset:
    """Token i at position i, so a window's first token tells where it starts."""
    splits = {
        "train": np.arange(n_train, dtype=np.uint16),
        "val": np.arange(n_val, dtype=np.uint16),
    }
    return TokenDataset(vocab_size=n_train, splits=splits, source="test")


# --- the stdlib corpus -----------------------------------------------------------------


def test_stdlib_builds_are_deterministic(tmp_path: Path) -> None:
    first, second = _stdlib(tmp_path / "a"), _stdlib(tmp_path / "b")
    files_a, files_b = _cache_files(tmp_path / "a"), _cache_files(tmp_path / "b")
    assert files_a == files_b
    assert first.content_hash == second.content_hash == token_stream_hash(first.splits)
    meta = json.loads(files_a["meta.json"])
    assert meta["sha256"] == first.content_hash
    assert meta["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["vocab_size"] == first.vocab_size == BYTE_VOCAB_SIZE
    assert meta["n_tokens"] == {"train": first.n_tokens("train"), "val": first.n_tokens("val")}
    assert 0 < first.n_tokens("train") + first.n_tokens("val") <= CAP


def test_stdlib_cache_key_holds_python_version_and_cap(tmp_path: Path) -> None:
    directory = stdlib_cache_dir(tmp_path, CAP)
    assert directory.parent.name == "stdlib-bytes-v1"
    assert directory.name == f"py{sys.version_info.major}.{sys.version_info.minor}-max{CAP}"


def test_stdlib_tokens_are_the_split_documents(tmp_path: Path) -> None:
    documents = stdlib_documents(CAP)
    names = [doc.name for doc in documents]
    assert names == sorted(names)
    assert all(name.endswith(".py") for name in names)
    assert not any(part in {"test", "tests", "idle_test", "site-packages", "__pycache__"}
                   for name in names for part in name.split("/"))
    split = split_documents(documents)
    train_names, val_names = {doc.name for doc in split["train"]}, {doc.name for doc in split["val"]}
    assert train_names.isdisjoint(val_names)
    assert train_names | val_names == set(names)
    assert train_names and val_names
    dataset = _stdlib(tmp_path)
    for name in ("train", "val"):
        expected = b"".join(doc.data for doc in split[name])
        assert bytes(np.asarray(dataset.splits[name], dtype=np.uint8)) == expected


def test_env_var_sets_the_cache_root_and_the_cache_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTSIM_DATA_DIR", str(tmp_path))
    first = open_dataset("stdlib", max_bytes=CAP)
    assert (stdlib_cache_dir(tmp_path, CAP) / "train.bin").is_file()

    def refuse_to_build(*args: object) -> None:
        raise AssertionError("a valid cache was rebuilt")

    monkeypatch.setattr(data, "_build_stdlib_cache", refuse_to_build)
    assert open_dataset(max_bytes=CAP).content_hash == first.content_hash


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_meta", "other_python"])
def test_damaged_cache_is_rebuilt(tmp_path: Path, damage: str) -> None:
    good = _stdlib(tmp_path)
    directory = stdlib_cache_dir(tmp_path, CAP)
    train = directory / "train.bin"
    if damage == "truncate":
        train.write_bytes(train.read_bytes()[:100])
    elif damage == "flip":
        raw = bytearray(train.read_bytes())
        raw[10] ^= 1
        train.write_bytes(bytes(raw))
    elif damage == "drop_meta":
        (directory / "meta.json").unlink()
    else:
        meta = json.loads((directory / "meta.json").read_text())
        meta["python"] = "2.7"
        (directory / "meta.json").write_text(json.dumps(meta))
    assert _stdlib(tmp_path).content_hash == good.content_hash
    _stdlib(tmp_path / "fresh")
    assert _cache_files(tmp_path) == _cache_files(tmp_path / "fresh")


def test_interrupted_build_leaves_nothing_that_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def crash_on_meta(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "meta.json":
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_meta)
    with pytest.raises(OSError, match="disk full"):
        _stdlib(tmp_path)
    directory = stdlib_cache_dir(tmp_path, CAP)
    assert not (directory / "meta.json").exists()
    assert not list(directory.glob("*.tmp"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert _stdlib(tmp_path).content_hash == _stdlib(tmp_path / "fresh").content_hash


def test_concurrent_builders_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    real_build = data._build_stdlib_cache

    def counted_build(*args: object) -> None:
        builds.append(threading.get_ident())
        real_build(*args)

    monkeypatch.setattr(data, "_build_stdlib_cache", counted_build)
    start = threading.Barrier(4)
    hashes: list[str | None] = []

    def builder() -> None:
        start.wait()
        hashes.append(_stdlib(tmp_path).content_hash)

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(hashes) == 4 and len(set(hashes)) == 1
    assert sorted(_cache_files(tmp_path)) == [".lock", "meta.json", "train.bin", "val.bin"]


def test_stdlib_cache_dir_opens_as_a_bin_source(tmp_path: Path) -> None:
    built = _stdlib(tmp_path)
    reopened = open_dataset(str(stdlib_cache_dir(tmp_path, CAP)))
    assert reopened.source.startswith("bin:")
    assert reopened.vocab_size == BYTE_VOCAB_SIZE
    assert token_stream_hash(reopened.splits) == built.content_hash


# --- batches ---------------------------------------------------------------------------


def test_get_batch_shapes_dtypes_and_shift() -> None:
    dataset = _counting_dataset()
    x, y = dataset.get_batch("train", 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    starts = x[:, :1]
    assert torch.equal(x, starts + torch.arange(16))
    assert torch.equal(y, starts + 1 + torch.arange(16))
    assert int(starts.min()) >= 0 and int(starts.max()) <= 1000 - 17


@settings(max_examples=30, deadline=None)
@given(batch_size=st.integers(1, 6), seq_len=st.integers(1, 199), seed=st.integers(0, 2**32))
def test_get_batch_windows_are_slices_of_the_split(batch_size: int, seq_len: int, seed: int) -> None:
    dataset = _counting_dataset()
    x, y = dataset.get_batch("val", batch_size, seq_len, torch.Generator().manual_seed(seed))
    window = torch.cat([x, y[:, -1:]], dim=1)
    assert torch.equal(window, window[:, :1] + torch.arange(seq_len + 1))
    assert int(window.max()) < 200


def test_get_batch_follows_the_generator() -> None:
    dataset = _counting_dataset()
    a = dataset.get_batch("train", 4, 8, torch.Generator().manual_seed(1))
    b = dataset.get_batch("train", 4, 8, torch.Generator().manual_seed(1))
    c = dataset.get_batch("train", 4, 8, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_fixed_batches_repeat_and_leave_the_global_rng_alone(tmp_path: Path) -> None:
    dataset = _stdlib(tmp_path)
    state = torch.random.get_rng_state()
    first = dataset.fixed_batches("train", 3, 4, 32, seed=7)
    second = dataset.fixed_batches("train", 3, 4, 32, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], dataset.fixed_batches("train", 1, 4, 32, seed=8)[0][0])


# --- other sources ---------------------------------------------------------------------


def _write_bins(directory: Path, train: np.ndarray, val: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    train.astype(np.uint16).tofile(directory / "train.bin")
    val.astype(np.uint16).tofile(directory / "val.bin")


def test_nanogpt_bins_round_trip_with_meta_pkl(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 65, 5000), rng.integers(0, 65, 500)
    _write_bins(tmp_path, train, val)
    chars = [chr(32 + i) for i in range(65)]
    meta = {"vocab_size": 65, "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps(meta))
    dataset = open_dataset(str(tmp_path))
    assert dataset.vocab_size == 65
    assert dataset.source == f"bin:{tmp_path.resolve()}"
    np.testing.assert_array_equal(dataset.splits["train"], train)
    np.testing.assert_array_equal(dataset.splits["val"], val)
    x, y = dataset.get_batch("val", 2, 10, torch.Generator().manual_seed(0))
    assert x.shape == (2, 10) and int(x.max()) < 65


def test_nanogpt_bins_vocab_from_meta_json_or_caller(tmp_path: Path) -> None:
    _write_bins(tmp_path / "plain", np.arange(300), np.arange(100))
    assert open_dataset(f"bin:{tmp_path / 'plain'}", vocab_size=50257).vocab_size == 50257
    _write_bins(tmp_path / "json", np.arange(300), np.arange(100))
    (tmp_path / "json" / "meta.json").write_text(json.dumps({"vocab_size": 300}))
    assert open_dataset(str(tmp_path / "json")).vocab_size == 300


def test_text_file_is_split_at_its_end(tmp_path: Path) -> None:
    text = ("The quick brown fox jumps over the lazy dog.\n" * 200).encode()
    path = tmp_path / "corpus.txt"
    path.write_bytes(text)
    dataset = open_dataset(str(path))
    n_val = math.ceil(len(text) * VAL_FRACTION)
    assert dataset.vocab_size == BYTE_VOCAB_SIZE
    assert dataset.n_tokens("val") == n_val
    assert bytes(np.asarray(dataset.splits["train"], dtype=np.uint8)) == text[:-n_val]
    assert bytes(np.asarray(dataset.splits["val"], dtype=np.uint8)) == text[-n_val:]
    assert open_dataset(f"text:{path}").content_hash == dataset.content_hash


def test_text_directory_is_split_by_file(tmp_path: Path) -> None:
    files = {f"doc{i:02d}.txt": f"document {i}\n".encode() * 50 for i in range(40)}
    files["nested/deeper.md"] = b"# nested\n" * 40
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    (tmp_path / ".hidden").write_bytes(b"secret\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.txt").write_bytes(b"cached\n")
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01\x02" * 100)
    dataset = open_dataset(str(tmp_path))
    split = split_documents([Document(name, files[name]) for name in sorted(files)])
    assert {doc.name for doc in split["train"]}.isdisjoint({doc.name for doc in split["val"]})
    for name in ("train", "val"):
        expected = b"".join(doc.data for doc in split[name])
        assert bytes(np.asarray(dataset.splits[name], dtype=np.uint8)) == expected
    assert dataset.n_tokens("train") + dataset.n_tokens("val") == sum(map(len, files.values()))


@settings(max_examples=50, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=60, unique=True))
def test_split_partitions_documents_with_both_splits_nonempty(names: list[str]) -> None:
    documents = [Document(name, b"x") for name in names]
    split = split_documents(documents)
    train, val = [doc.name for doc in split["train"]], [doc.name for doc in split["val"]]
    assert sorted(train + val) == sorted(names)
    assert train and val
    assert split_documents(list(reversed(documents)))["val"] == list(reversed(split["val"]))


# --- GPT-2 BPE through tiktoken --------------------------------------------------------


def _install_fake_tiktoken(monkeypatch: pytest.MonkeyPatch, cached: bool) -> types.ModuleType:
    """A stand-in shaped like tiktoken: encodings load through ``tiktoken.load.read_file``,
    which it calls only on a cache miss, as the real package does."""
    load = types.ModuleType("tiktoken.load")
    load.read_file = lambda blobpath: b"downloaded"
    tiktoken = types.ModuleType("tiktoken")
    tiktoken.load = load

    class Encoding:
        n_vocab = 50257
        eot_token = 50256

        def encode_ordinary(self, text: str) -> list[int]:
            return [ord(char) for char in text]

    def get_encoding(name: str) -> Encoding:
        if not cached:
            load.read_file(f"https://openaipublic.blob.core.windows.net/{name}/vocab.bpe")
        return Encoding()

    tiktoken.get_encoding = get_encoding
    monkeypatch.setitem(sys.modules, "tiktoken", tiktoken)
    monkeypatch.setitem(sys.modules, "tiktoken.load", load)
    return load


def test_gpt2_without_tiktoken_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("hello world\n" * 20)
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` fail
    with pytest.raises(DataError) as excinfo:
        open_dataset(f"gpt2:{tmp_path / 'a.txt'}")
    message = str(excinfo.value)
    assert "\n" not in message
    assert "tiktoken" in message and "byte-level default" in message


def test_gpt2_refuses_to_download_the_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("hello world\n" * 20)
    load = _install_fake_tiktoken(monkeypatch, cached=False)
    fetch = load.read_file
    with pytest.raises(DataError) as excinfo:
        open_dataset(f"gpt2:{tmp_path / 'a.txt'}")
    assert "\n" not in str(excinfo.value) and "TIKTOKEN_CACHE_DIR" in str(excinfo.value)
    assert load.read_file is fetch


def test_gpt2_with_a_cached_encoding_tokenizes_each_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"text {i}\n")
    _install_fake_tiktoken(monkeypatch, cached=True)
    dataset = open_dataset(f"gpt2:{tmp_path}")
    assert dataset.vocab_size == 50257
    tokens = np.concatenate([dataset.splits["train"], dataset.splits["val"]])
    assert int((tokens == 50256).sum()) == 30
    assert dataset.source == f"gpt2:{tmp_path.resolve()}"


# --- errors ----------------------------------------------------------------------------


def _empty_dir(tmp_path: Path) -> str:
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


def _binary_only_dir(tmp_path: Path) -> str:
    (tmp_path / "bin_only").mkdir()
    (tmp_path / "bin_only" / "blob").write_bytes(b"\x00" * 64)
    return str(tmp_path / "bin_only")


def _empty_file(tmp_path: Path) -> str:
    (tmp_path / "empty.txt").touch()
    return str(tmp_path / "empty.txt")


def _bins(tmp_path: Path, train_bytes: bytes, val_bytes: bytes | None, meta: str | None) -> str:
    directory = tmp_path / "bins"
    directory.mkdir()
    (directory / "train.bin").write_bytes(train_bytes)
    if val_bytes is not None:
        (directory / "val.bin").write_bytes(val_bytes)
    if meta is not None:
        (directory / "meta.json").write_text(meta)
    return str(directory)


class _Evil:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("pwned",))


def _evil_pickle_dir(tmp_path: Path) -> str:
    directory = _bins(tmp_path, b"\x01\x00" * 50, b"\x01\x00" * 50, None)
    Path(directory, "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 2, "x": _Evil()}))
    return directory


def _text_dir(tmp_path: Path) -> str:
    (tmp_path / "texts").mkdir()
    for i in range(3):
        (tmp_path / "texts" / f"{i}.txt").write_text("abc" * 100)
    return str(tmp_path / "texts")


def _tiny_text(tmp_path: Path) -> TokenDataset:
    (tmp_path / "tiny.txt").write_bytes(b"0123456789")
    return open_dataset(str(tmp_path / "tiny.txt"))


ERROR_CASES: dict[str, Callable[[Path], object]] = {
    "missing path": lambda tmp: open_dataset(str(tmp / "nope")),
    "missing gpt2 path": lambda tmp: open_dataset(f"gpt2:{tmp / 'nope'}"),
    "scheme without a path": lambda tmp: open_dataset("text:"),
    "empty directory": lambda tmp: open_dataset(_empty_dir(tmp)),
    "binary-only directory": lambda tmp: open_dataset(_binary_only_dir(tmp)),
    "empty file": lambda tmp: open_dataset(_empty_file(tmp)),
    "corpus smaller than a window": lambda tmp: _tiny_text(tmp).get_batch("train", 1, 64, torch.Generator()),
    "val smaller than a window": lambda tmp: _tiny_text(tmp).fixed_batches("val", 1, 1, 2),
    "unknown split": lambda tmp: _tiny_text(tmp).n_tokens("test"),
    "zero batch size": lambda tmp: _tiny_text(tmp).get_batch("train", 0, 2, torch.Generator()),
    "bins without val.bin": lambda tmp: open_dataset(_bins(tmp, b"\0\0" * 10, None, '{"vocab_size": 4}')),
    "odd-sized bin": lambda tmp: open_dataset(_bins(tmp, b"\0\0\0", b"\0\0", '{"vocab_size": 4}')),
    "bins without vocab": lambda tmp: open_dataset(_bins(tmp, b"\0\0" * 10, b"\0\0" * 10, None)),
    "bad meta.json": lambda tmp: open_dataset(_bins(tmp, b"\0\0" * 10, b"\0\0" * 10, "{not json")),
    "meta.json without vocab": lambda tmp: open_dataset(_bins(tmp, b"\0\0" * 10, b"\0\0" * 10, "{}")),
    "pickle with code": lambda tmp: open_dataset(_evil_pickle_dir(tmp)),
    "vocab conflict": lambda tmp: open_dataset(_text_dir(tmp), vocab_size=50257),
    "stdlib cap below the first file": lambda tmp: open_dataset(cache_dir=tmp, max_bytes=10),
    "stdlib with an argument": lambda tmp: open_dataset("stdlib:extra", cache_dir=tmp),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_are_one_line_data_errors(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DataError) as excinfo:
        ERROR_CASES[case](tmp_path)
    assert isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    assert message and "\n" not in message
    assert ";" in message  # the problem, then the fix
    assert capsys.readouterr().out == ""
