"""Training data for validation runs: token streams, train/val splits and batches.

Validation has to train a real GPT anywhere the project runs, including machines with no
network, so the default corpus is built from text every Python installation carries: the
standard library's own ``.py`` sources, tokenized as raw bytes (vocabulary 256). The build
is deterministic, so two machines with the same Python build get the same tokens, and
the ``sha256`` in ``meta.json`` names exactly what a run trained on (distributions that
patch their stdlib may differ, which the hash reveals).

Every source yields the same :class:`TokenDataset`, so training code never cares where
tokens came from. ``open_dataset`` picks the reader from a small table keyed by scheme:

* ``None`` or ``"stdlib"``: the standard-library byte corpus, cached on disk;
* ``"bin:<dir>"``, or a directory holding ``train.bin``: nanoGPT-style uint16 token files;
* ``"text:<path>"``, or any other file or directory: raw bytes of the text files;
* ``"gpt2:<path>"``: GPT-2 BPE of that text via ``tiktoken``, only if it works offline.

Splits are by document: a stable hash of each file's relative path holds out about
``VAL_FRACTION`` of the files, so validation text is never seen in training, and the same
file lands in the same split whatever else the corpus holds. A lone file has no
neighbours to hold out, so its last ``VAL_FRACTION`` of bytes becomes the validation split.

Tokens are stored as little-endian uint16, like nanoGPT's ``.bin`` files, even for bytes:
one on-disk format serves every source and every reader.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import pickle
import platform
import sys
import sysconfig
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

SPLITS = ("train", "val")
VAL_FRACTION = 0.02
BYTE_VOCAB_SIZE = 256
DEFAULT_MAX_BYTES = 32 * 2**20
TOKEN_DTYPE = np.dtype("<u2")
STDLIB_FORMAT = "stdlib-bytes-v1"
DATA_DIR_ENV = "COSTSIM_DATA_DIR"

CacheDir = str | os.PathLike[str] | None

# Tests and other packages' files would make the corpus depend on what happens to be
# installed; the platform's build configuration (config-*/, _sysconfigdata*) would make
# it differ between machines running the same Python.
_STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})


class DataError(ValueError):
    """A data source cannot serve the request; the message names the problem and the fix."""


class Document(NamedTuple):
    """One file's bytes, named by its path relative to the corpus root (the split key)."""

    name: str
    data: bytes


@dataclass(frozen=True, eq=False)
class TokenDataset:
    """Token streams for the ``train`` and ``val`` splits, whatever the source.

    ``splits`` holds 1-D integer arrays (uint16 memmaps for on-disk sources), so a
    multi-gigabyte corpus costs no RAM until windows are read. ``source`` is a string
    ``open_dataset`` accepts to reopen the same data; ``content_hash`` is the sha256 of
    the token stream where it is known cheaply (it is ``None`` for foreign ``.bin`` files,
    which may be too large to hash at every open).
    """

    vocab_size: int
    splits: Mapping[str, np.ndarray]
    source: str
    content_hash: str | None = None

    def n_tokens(self, split: str) -> int:
        """Number of tokens in ``split``."""
        return int(self._tokens(split).shape[0])

    def get_batch(
        self, split: str, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows as nanoGPT draws them: ``y`` is ``x`` shifted left by one token.

        Starts are drawn from ``generator`` (a CPU generator), so a seeded generator makes
        the batch sequence reproducible. Returns two int64 ``(batch_size, seq_len)``
        tensors on the CPU; moving them to a device is the caller's choice.
        """
        tokens = self._tokens(split)
        _check_positive(batch_size=batch_size, seq_len=seq_len)
        if tokens.shape[0] < seq_len + 1:
            raise DataError(
                f"the {split} split of {self.source} has {tokens.shape[0]} tokens, fewer than one "
                f"window of seq_len+1={seq_len + 1}; use a larger corpus or a shorter seq_len"
            )
        starts = torch.randint(tokens.shape[0] - seq_len, (batch_size,), generator=generator).numpy()
        windows = torch.from_numpy(tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def fixed_batches(
        self, split: str, n_batches: int, batch_size: int, seq_len: int, seed: int = 0
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``n_batches`` batches at every call, for comparable validation losses.

        A private generator seeded with ``seed`` draws them, so neither the global RNG nor
        the training generator is disturbed, and two runs evaluate on identical windows.
        """
        _check_positive(n_batches=n_batches)
        generator = torch.Generator().manual_seed(seed)
        return [self.get_batch(split, batch_size, seq_len, generator) for _ in range(n_batches)]

    def _tokens(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return self.splits[split]


@dataclass(frozen=True)
class _Options:
    """The keyword arguments of ``open_dataset``, handed to whichever reader it picks."""

    cache_dir: CacheDir
    max_bytes: int
    vocab_size: int | None


def open_dataset(
    source: str | None = None,
    *,
    cache_dir: CacheDir = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    vocab_size: int | None = None,
) -> TokenDataset:
    """Open any supported source as a :class:`TokenDataset`.

    ``cache_dir`` and ``max_bytes`` shape the stdlib corpus only. ``vocab_size`` supplies
    the vocabulary of ``.bin`` files that carry no meta file; for any other source it is
    a check, and a mismatch raises rather than letting a model be built with the wrong
    embedding size.
    """
    options = _Options(cache_dir, max_bytes, vocab_size)
    scheme, arg = _parse_source(source)
    dataset = _READERS[scheme](arg, options)
    if vocab_size is not None and dataset.vocab_size != vocab_size:
        raise DataError(
            f"{dataset.source} has vocab_size {dataset.vocab_size} but vocab_size={vocab_size} was "
            "requested; drop the argument or point at the intended data"
        )
    return dataset


def _parse_source(source: str | None) -> tuple[str, str]:
    """Split ``source`` into (scheme, argument), detecting the scheme of a bare path."""
    if source is None or source == "stdlib":
        return "stdlib", ""
    scheme, sep, arg = source.partition(":")
    if sep and scheme in _READERS:
        return scheme, arg
    path = _existing_path(source)
    return ("bin" if (path / "train.bin").is_file() else "text"), source


def _existing_path(arg: str) -> Path:
    if not arg:
        raise DataError("no path given after the scheme; write e.g. 'text:/path/to/corpus'")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(
            f"data source {arg!r} does not exist; pass an existing file or directory, "
            "or None/'stdlib' for the built-in corpus"
        )
    return path.resolve()


# ---------------------------------------------------------------------------
# The stdlib byte corpus
# ---------------------------------------------------------------------------


def stdlib_root() -> Path:
    """The directory of this interpreter's standard library (the base one, even in a venv)."""
    return Path(sysconfig.get_paths()["stdlib"])


def python_minor() -> str:
    """``major.minor`` of this interpreter: the stdlib, hence the corpus, differs between them."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def stdlib_cache_dir(cache_dir: CacheDir = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Where the stdlib corpus for this Python and byte cap lives.

    The data root is ``cache_dir``, else ``$COSTSIM_DATA_DIR``, else
    ``~/.cache/costsim/data``; beneath it, one directory per format, Python minor version
    and cap, so corpora that differ never share a cache.
    """
    root = cache_dir if cache_dir is not None else os.environ.get(DATA_DIR_ENV) or "~/.cache/costsim/data"
    return Path(root).expanduser() / STDLIB_FORMAT / f"py{python_minor()}-max{max_bytes}"


def stdlib_documents(max_bytes: int = DEFAULT_MAX_BYTES) -> list[Document]:
    """The stdlib's ``.py`` files in sorted order, the longest prefix fitting ``max_bytes``.

    Whole files only, so no document is cut at an arbitrary byte; sorting by the relative
    POSIX path makes the order independent of the file system and the platform.
    """
    _check_positive(max_bytes=max_bytes)
    root = stdlib_root()
    documents: list[Document] = []
    total = 0
    for name, path in _sorted_files(root, _skip_stdlib_dir, _keep_stdlib_file):
        data = path.read_bytes()
        if total + len(data) > max_bytes:
            if not documents:
                raise DataError(
                    f"max_bytes={max_bytes} admits no stdlib file (the first, {name}, has "
                    f"{len(data)} bytes); raise max_bytes"
                )
            break
        documents.append(Document(name, data))
        total += len(data)
    if not documents:
        raise DataError(f"no .py files found under the stdlib at {root}; pass a text source instead")
    return documents


def _skip_stdlib_dir(name: str) -> bool:
    return name in _STDLIB_SKIP_DIRS or name.startswith((".", "config-"))


def _keep_stdlib_file(name: str) -> bool:
    return name.endswith(".py") and not name.startswith("_sysconfigdata")


def open_stdlib(cache_dir: CacheDir = None, max_bytes: int = DEFAULT_MAX_BYTES) -> TokenDataset:
    """The stdlib corpus, built once per cache directory and verified at every open.

    A cache that fails verification (missing, truncated, another format, another Python
    minor version or cap) is rebuilt. Builders serialize on a lock file, so concurrent
    runs wait for one build instead of corrupting each other's files.
    """
    directory = stdlib_cache_dir(cache_dir, max_bytes)
    identity = {"format": STDLIB_FORMAT, "python": python_minor(), "max_bytes": max_bytes}
    dataset = _load_stdlib_cache(directory, identity)
    if dataset is not None:
        return dataset
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(directory / ".lock"):
        dataset = _load_stdlib_cache(directory, identity)
        if dataset is None:
            _build_stdlib_cache(directory, max_bytes, identity)
            dataset = _load_stdlib_cache(directory, identity)
    if dataset is None:
        raise DataError(
            f"the corpus just built in {directory} does not verify; check the disk or pass another cache_dir"
        )
    return dataset


def _load_stdlib_cache(directory: Path, identity: Mapping[str, Any]) -> TokenDataset | None:
    """The cached corpus if its meta matches ``identity`` and its tokens match the hash."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
        dataset = _open_bin_dir(directory, None)
    except (OSError, ValueError):  # DataError is a ValueError, as is bad JSON
        return None
    if not isinstance(meta, dict) or any(meta.get(key) != value for key, value in identity.items()):
        return None
    if meta.get("sha256") != token_stream_hash(dataset.splits):
        return None
    return replace(dataset, source="stdlib", content_hash=meta["sha256"])


def _build_stdlib_cache(directory: Path, max_bytes: int, identity: Mapping[str, Any]) -> None:
    """Write ``train.bin``, ``val.bin`` and, last, ``meta.json``; call it holding the lock.

    ``meta.json`` is removed first and written last, so a reader never pairs it with
    bins from another build, and a build that dies midway leaves a cache that fails
    verification and is rebuilt, never one that passes with half its data.
    """
    documents = split_documents(stdlib_documents(max_bytes))
    tokens = {split: _byte_tokens(documents[split]) for split in SPLITS}
    meta = {
        **identity,
        "source": "python standard library .py files, raw bytes",
        "stdlib_root": str(stdlib_root()),
        "python_full": platform.python_version(),
        "vocab_size": BYTE_VOCAB_SIZE,
        "dtype": "uint16 little-endian",
        "val_fraction": VAL_FRACTION,
        "n_files": {split: len(documents[split]) for split in SPLITS},
        "n_tokens": {split: int(tokens[split].shape[0]) for split in SPLITS},
        "sha256": token_stream_hash(tokens),
    }
    (directory / "meta.json").unlink(missing_ok=True)
    for split in SPLITS:
        _write_atomic(directory / f"{split}.bin", tokens[split].tobytes())
    _write_atomic(directory / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; it excludes other processes and threads alike.

    The lock file is never deleted: removing it would let two builders lock different
    inodes of the same name.
    """
    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` all at once: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def token_stream_hash(splits: Mapping[str, np.ndarray]) -> str:
    """sha256 over both splits as little-endian uint16, each preceded by its name and length.

    The lengths make a shifted split boundary change the hash; the fixed dtype makes the
    hash independent of how the tokens happen to be held in memory.
    """
    digest = hashlib.sha256()
    for split in SPLITS:
        tokens = np.ascontiguousarray(splits[split], dtype=TOKEN_DTYPE)
        digest.update(f"{split}:{tokens.shape[0]}\n".encode())
        digest.update(tokens.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Splitting and reading text
# ---------------------------------------------------------------------------


def split_documents(documents: list[Document]) -> dict[str, list[Document]]:
    """Hold out about ``VAL_FRACTION`` of the documents, chosen by a hash of their names.

    The hash is sha256, not ``hash()``, which is salted per process. With two or more
    documents each split gets at least one; a single document is cut instead, its last
    ``VAL_FRACTION`` of bytes (at least one) going to validation.
    """
    if len(documents) == 1:
        name, data = documents[0]
        cut = len(data) - max(1, math.ceil(len(data) * VAL_FRACTION))
        return {"train": [Document(name, data[:cut])], "val": [Document(name, data[cut:])]}
    scores = {doc.name: _name_fraction(doc.name) for doc in documents}
    held_out = {name for name, score in scores.items() if score < VAL_FRACTION}
    if not held_out or len(held_out) == len(documents):
        held_out = {min(scores, key=scores.__getitem__)}
    return {
        "train": [doc for doc in documents if doc.name not in held_out],
        "val": [doc for doc in documents if doc.name in held_out],
    }


def _name_fraction(name: str) -> float:
    """A stable number in [0, 1) per name, the same on every machine and Python."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _sorted_files(
    root: Path, skip_dir: Callable[[str], bool], keep_file: Callable[[str], bool]
) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, path), sorted by that string."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not skip_dir(name)]
        for filename in filenames:
            path = Path(dirpath, filename)
            if keep_file(filename) and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _skip_hidden_dir(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def _keep_visible_file(name: str) -> bool:
    return not name.startswith(".")


def read_text_documents(path: Path) -> list[Document]:
    """The documents of a text source: a file, or a directory's visible text files.

    In a directory, files containing a NUL byte are taken for binary and skipped (the
    heuristic git and grep use), so a stray archive or checkpoint does not become text.
    """
    if path.is_file():
        data = path.read_bytes()
        if not data:
            raise DataError(f"text file {path} is empty; point at a file with text in it")
        return [Document(path.name, data)]
    documents = []
    for name, file in _sorted_files(path, _skip_hidden_dir, _keep_visible_file):
        data = file.read_bytes()
        if data and b"\0" not in data:
            documents.append(Document(name, data))
    if not documents:
        raise DataError(
            f"directory {path} contains no non-empty text files; add some, or point at another source"
        )
    return documents


def _byte_tokens(documents: list[Document]) -> np.ndarray:
    return np.frombuffer(b"".join(doc.data for doc in documents), dtype=np.uint8).astype(TOKEN_DTYPE)


# ---------------------------------------------------------------------------
# Readers, one per scheme
# ---------------------------------------------------------------------------


def _read_stdlib(arg: str, options: _Options) -> TokenDataset:
    if arg:
        raise DataError(f"'stdlib' takes no argument, got 'stdlib:{arg}'; use 'stdlib' alone")
    return open_stdlib(options.cache_dir, options.max_bytes)


def _read_text(arg: str, options: _Options) -> TokenDataset:
    path = _existing_path(arg)
    documents = split_documents(read_text_documents(path))
    splits = {split: _byte_tokens(documents[split]) for split in SPLITS}
    return TokenDataset(BYTE_VOCAB_SIZE, splits, f"text:{path}", token_stream_hash(splits))


def _read_bin(arg: str, options: _Options) -> TokenDataset:
    return _open_bin_dir(_existing_path(arg), options.vocab_size)


def _open_bin_dir(directory: Path, vocab_size: int | None) -> TokenDataset:
    """nanoGPT-style ``train.bin``/``val.bin``, memory-mapped rather than read.

    The memmaps stay open for the dataset's life; nanoGPT reopens them per batch only to
    keep the page cache out of its RSS figure, which the OS reclaims anyway.
    """
    splits = {split: _memmap_tokens(directory / f"{split}.bin") for split in SPLITS}
    meta_vocab = _meta_vocab_size(directory)
    if meta_vocab is not None and vocab_size is not None and meta_vocab != vocab_size:
        raise DataError(
            f"{directory} declares vocab_size {meta_vocab} but vocab_size={vocab_size} was "
            "requested; drop the argument or fix the meta file"
        )
    resolved = meta_vocab if meta_vocab is not None else vocab_size
    if resolved is None:
        raise DataError(f"{directory} has no meta.json or meta.pkl giving vocab_size; pass vocab_size=N")
    return TokenDataset(resolved, splits, f"bin:{directory}")


def _memmap_tokens(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing; a .bin source needs both train.bin and val.bin")
    size = path.stat().st_size
    if size % TOKEN_DTYPE.itemsize:
        raise DataError(f"{path} has an odd number of bytes ({size}), so it is not uint16 tokens; rebuild it")
    if size == 0:  # mmap refuses empty files; an empty split is still a valid (if useless) split
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads dicts, lists, strings and numbers only: nanoGPT's meta.pkl needs nothing more,
    and refusing every global means a hostile pickle cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"meta.pkl refers to {module}.{name}; only plain data is accepted")


def _meta_vocab_size(directory: Path) -> int | None:
    """``vocab_size`` from ``meta.json`` (preferred: it is ours) or nanoGPT's ``meta.pkl``."""
    json_path, pkl_path = directory / "meta.json", directory / "meta.pkl"
    try:
        if json_path.is_file():
            meta = json.loads(json_path.read_text())
        elif pkl_path.is_file():
            with open(pkl_path, "rb") as handle:
                meta = _PlainDataUnpickler(handle).load()
        else:
            return None
    except (ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(
            f"cannot read the meta file in {directory} ({exc}); fix or remove it and pass vocab_size=N"
        ) from exc
    vocab = meta.get("vocab_size") if isinstance(meta, dict) else None
    if not isinstance(vocab, int) or vocab < 1:
        raise DataError(
            f"the meta file in {directory} has no positive integer vocab_size; add one or remove the file"
        )
    return vocab


_GPT2_NOT_INSTALLED = (
    "GPT-2 BPE needs the tiktoken package, which is not installed; install tiktoken and cache "
    "its gpt2 encoding (TIKTOKEN_CACHE_DIR), or use the byte-level default"
)
_GPT2_NOT_CACHED = (
    "GPT-2 BPE needs tiktoken's gpt2 encoding cached locally and it is not (downloads are off); "
    "populate TIKTOKEN_CACHE_DIR on a networked machine, or use the byte-level default"
)


class _DownloadRefused(OSError):
    """Raised in place of a tiktoken download; an OSError, like a failed download."""


def _read_gpt2(arg: str, options: _Options) -> TokenDataset:
    path = _existing_path(arg)
    encoding = _offline_gpt2_encoding()
    documents = split_documents(read_text_documents(path))
    splits = {split: _bpe_tokens(encoding, documents[split]) for split in SPLITS}
    return TokenDataset(encoding.n_vocab, splits, f"gpt2:{path}", token_stream_hash(splits))


def _offline_gpt2_encoding() -> Any:
    """tiktoken's gpt2 encoding if it loads without the network, else a DataError saying why."""
    try:
        import tiktoken
        import tiktoken.load
    except ImportError as exc:
        raise DataError(_GPT2_NOT_INSTALLED) from exc
    try:
        with _downloads_refused(tiktoken.load):
            return tiktoken.get_encoding("gpt2")
    except OSError as exc:
        raise DataError(_GPT2_NOT_CACHED) from exc


@contextmanager
def _downloads_refused(load_module: ModuleType) -> Iterator[None]:
    """Make tiktoken's fetcher refuse URLs while still reading local files.

    tiktoken reads its encoding through ``tiktoken.load.read_file`` only on a cache miss,
    and that function would download. Swapping it is process-wide for the duration, which
    is acceptable because encodings load once, at startup.
    """
    fetch = load_module.read_file

    def local_only(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise _DownloadRefused(f"refusing to download {blobpath}")
        return fetch(blobpath)

    load_module.read_file = local_only
    try:
        yield
    finally:
        load_module.read_file = fetch


def _bpe_tokens(encoding: Any, documents: list[Document]) -> np.ndarray:
    """Each document encoded without special tokens and closed by ``<|endoftext|>``, as
    nanoGPT prepares OpenWebText; undecodable bytes become U+FFFD."""
    tokens: list[int] = []
    for doc in documents:
        tokens.extend(encoding.encode_ordinary(doc.data.decode("utf-8", "replace")))
        tokens.append(encoding.eot_token)
    return np.asarray(tokens, dtype=TOKEN_DTYPE)


_READERS: dict[str, Callable[[str, _Options], TokenDataset]] = {
    "stdlib": _read_stdlib,
    "bin": _read_bin,
    "text": _read_text,
    "gpt2": _read_gpt2,
}


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise DataError(f"{name} must be at least 1, got {value}; pass a positive value")
