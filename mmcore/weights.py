"""Getting weights safely: checksummed downloads into a cache, and checkpoint files that run no code.

Three jobs, each a few small functions:

1. **Download + cache** (:func:`download`). A file is streamed into a temporary file *inside* the cache
   folder while its SHA-256 is computed; only when the byte count and the hash are right is it renamed to its
   final name (``os.replace`` is atomic). So a half-finished or corrupted download can never be mistaken for a
   good file by a later call - and every cache hit is checked against the hash again.
2. **Reading PyTorch ``.pt`` files without running their code** (:func:`read_torch_checkpoint`). A ``.pt``
   file is a zip archive holding a *pickle* (``data.pkl``) plus one raw binary file per tensor. Unpickling is
   a small program that may import and call *any* Python function, so ``torch.load(..., weights_only=False)``
   or ``torch.jit.load`` on a file from the internet means trusting whoever made it. Plain state dicts are read
   with ``torch.load(weights_only=True)``; OpenAI's CLIP checkpoints are TorchScript archives, which that refuses,
   so we read their pickle with our own :class:`_RestrictedUnpickler`: it knows how to rebuild tensors, turns
   every TorchScript module into an inert record of its attributes, and refuses every other import.
3. **Our own checkpoints** (:func:`save_checkpoint`, :func:`load_checkpoint`): ``safetensors`` files (just a JSON
   header + raw tensor bytes, no pickle at all) with a JSON "card" describing the model, stored both inside the
   file's metadata and beside it as ``<name>.json`` for people to read.

The cache folder is ``$MMCORE_CACHE`` if set, else ``$XDG_CACHE_HOME/mmcore``, else ``~/.cache/mmcore``.
This module imports no model code (``mmcore.clip`` builds on it).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = [
    "DictConfig",
    "DownloadError",
    "ChecksumError",
    "default_cache_dir",
    "sha256_file",
    "download",
    "safe_filename",
    "read_torch_checkpoint",
    "read_state_dict",
    "save_checkpoint",
    "load_checkpoint",
    "card_path",
    "resolve_checkpoint",
    "check_kind",
    "check_tensors",
    "atomic_write",
]


class DictConfig:
    """``to_dict`` / ``from_dict`` for the dataclass configs that checkpoint cards store (every model's config).

    ``to_dict`` writes plain JSON values (tuples become lists); ``from_dict`` ignores keys it does not know (a card
    written by a newer version) and turns lists back into tuples where the field is a tuple."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        known = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: tuple(v) if known[k].startswith("tuple") and isinstance(v, list) else v
                  for k, v in d.items() if k in known}
        return cls(**values)


_CHUNK = 1 << 20  # 1 MiB per read while streaming / hashing


class DownloadError(OSError):
    """A download failed (no network, HTTP error, truncated transfer); nothing was written to the cache."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the published SHA-256; the file was discarded."""


# ----------------------------------------------------------------------------------------------- cache + download


CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"  # the shipped checkpoints


def default_cache_dir() -> Path:
    """``$MMCORE_CACHE``, else ``$XDG_CACHE_HOME/mmcore``, else ``~/.cache/mmcore`` (not created here)."""
    env = os.environ.get("MMCORE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mmcore"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (a 900 MB checkpoint never sits in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, name: str, enabled: bool) -> Any:
    """A tqdm bar if tqdm is installed and ``enabled``; otherwise an object whose ``update``/``close`` do nothing."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name)
        except ImportError:
            pass

    class _Silent:
        def update(self, n: int) -> None:
            pass

        def close(self) -> None:
            pass

    return _Silent()


def safe_filename(filename: str) -> str:
    """``filename`` if it names a plain file inside a folder, else a ValueError: no separators, not ``.`` or ``..``,
    no NUL, not hidden (so a cache file can never land outside the cache or overwrite one of its temporary files)."""
    if not isinstance(filename, str) or not filename:
        raise ValueError(f"a cache file name must be a non-empty string; got {filename!r}")
    if filename in (".", "..") or filename.startswith(".") or any(c in filename for c in "/\\\0"):
        raise ValueError(f"cache file name {filename!r} is not a plain file name: no '/', '\\', leading '.' or "
                         "'..' (downloads stay inside the cache folder)")
    return filename


_STALE_PART_SECONDS = 24 * 3600  # a .part file older than this belongs to a download that died: it is removed


def download(
    url: str,
    sha256: str,
    cache_dir: str | os.PathLike | None = None,
    filename: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    deadline: float | None = 3600.0,
    max_bytes: int | None = 2 * 2**30,
) -> Path:
    """Return the path of ``url``'s file in the cache, downloading it first if needed.

    * ``filename`` (default: the URL's last path part) must be a plain file name (:func:`safe_filename`): the file is
      written, checked or deleted only inside the cache folder.
    * A cached file is used only if its SHA-256 equals ``sha256`` (a bad one is deleted and fetched again).
    * The download streams into ``<cache>/.<filename>.<random>.part`` while hashing; the byte count is checked
      against ``Content-Length`` and the hash against ``sha256``; only then is the file moved into place. On any
      failure the partial file is deleted, so the cache never holds a file that a later call would trust; ``.part``
      files a killed process left behind are removed after a day.
    * ``timeout``: seconds any one read may wait; ``deadline``: seconds the whole download may take (a server that
      trickles bytes cannot keep it alive for hours); ``max_bytes``: the largest file accepted (checked against
      ``Content-Length`` before the first byte, and while streaming). None switches a limit off.
    * Without network the :class:`DownloadError` says which file to put where.
    """
    sha256 = sha256.lower()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    filename = filename or Path(urllib.parse.urlparse(url).path).name
    if not filename:
        raise ValueError(f"cannot tell a file name from {url!r}; pass filename=")
    target = root / safe_filename(filename)

    if target.is_file():
        if sha256_file(target) == sha256:
            return target  # cache hit: no network needed
        warnings.warn(f"{target} does not have the expected SHA-256 {sha256}; deleting it and downloading again")
        target.unlink()

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(root, filename)
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, sha256, filename, target, progress, timeout, deadline, max_bytes)
        os.replace(tmp, target)  # atomic on the same file system: the file appears complete or not at all
    except BaseException:  # includes KeyboardInterrupt: never leave the .part file behind
        tmp.unlink(missing_ok=True)
        raise
    return target


def _remove_stale_parts(root: Path, filename: str) -> None:
    """Delete ``.<filename>.*.part`` files older than a day: what a killed download left (a live one is younger)."""
    now = time.time()
    for part in root.glob(f".{glob.escape(filename)}.*.part"):
        try:
            if now - part.stat().st_mtime > _STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass  # another process removed or replaced it: nothing to do


def _stream(url: str, out: Any, sha256: str, filename: str, target: Path, progress: bool, timeout: float,
            deadline: float | None = None, max_bytes: int | None = None) -> None:
    """Copy ``url`` into the open file ``out``, checking length, size, time and hash; raise :class:`DownloadError`."""
    started = time.monotonic()
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not download {url} ({reason}).\n"
            f"Without internet: download that URL on another machine and copy the file to\n    {target}\n"
            f"(or set MMCORE_CACHE to the folder holding {filename}); its SHA-256 must be {sha256}."
        ) from err
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        if max_bytes is not None and expected is not None and expected > max_bytes:
            raise DownloadError(f"{url} is {expected:,} bytes, more than the {max_bytes:,} allowed (max_bytes=)")
        digest = hashlib.sha256()
        received = 0
        bar = _progress_bar(expected, filename, progress)
        try:
            while True:
                try:
                    chunk = response.read1(_CHUNK)  # what has arrived (up to 1 MiB): the deadline is checked often
                except Exception as err:  # http.client.IncompleteRead, ConnectionResetError, timeouts
                    raise DownloadError(f"download of {url} broke off after {received} bytes: {err!r}") from err
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                if max_bytes is not None and received > max_bytes:
                    raise DownloadError(f"download of {url} passed the {max_bytes:,} bytes allowed (max_bytes=)")
                if deadline is not None and time.monotonic() - started > deadline:
                    raise DownloadError(f"download of {url} took more than {deadline:.0f} s (deadline=) after "
                                        f"{received:,} bytes: the server is too slow; try again later")
        finally:
            bar.close()
    if expected is not None and received != expected:
        raise DownloadError(f"download of {url} is truncated: got {received} of {expected} bytes")
    actual = digest.hexdigest()
    if actual != sha256:
        raise ChecksumError(f"SHA-256 of {url} is {actual}, expected {sha256}: the file was discarded")


# ------------------------------------------------------------------------------------ reading .pt files safely


class _ScriptObject:
    """Inert stand-in for a TorchScript module or object found in an archive: it only stores its attributes."""

    _qualified_name = "?"

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:  # called by pickle's BUILD opcode
        self.state = state

    def __repr__(self) -> str:
        return f"<TorchScript object {self._qualified_name}>"


class _StorageType:
    """What ``torch.FloatStorage`` & co. stand for inside a pickle: just the element dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage: Tensor, offset: int, size: tuple, stride: tuple, *unused: Any) -> Tensor:
    """Our version of ``torch._utils._rebuild_tensor_v2``: a strided view into a flat storage tensor."""
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: Tensor, requires_grad: bool = False, hooks: Any = None) -> Tensor:
    return data


def _identity(x: Any, *unused: Any) -> Any:
    return x


# The only callables a checkpoint pickle may reach. Everything else raises UnpicklingError.
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _identity,
    ("torch.jit._pickle", "build_doublelist"): _identity,
    ("torch.jit._pickle", "build_boollist"): _identity,
    ("torch.jit._pickle", "build_tensorlist"): _identity,
    ("torch.jit._pickle", "build_tensor_from_id"): _identity,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a ``data.pkl`` from a PyTorch zip archive, allowing only tensor reconstruction.

    * ``torch.<X>Storage`` becomes a :class:`_StorageType`; a persistent id ``('storage', type, key, ...)`` reads
      ``<prefix>/data/<key>`` from the zip as raw bytes (no code involved).
    * ``__torch__.*`` classes (TorchScript modules) become fresh subclasses of :class:`_ScriptObject`.
    * anything else: ``pickle.UnpicklingError``.
    """

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "__torch__" or module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {"_qualified_name": f"{module}.{name}"})
        raise pickle.UnpicklingError(f"checkpoint wants to import {module}.{name}: refused (not a tensor type)")

    def persistent_load(self, pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))  # writable copy of the raw bytes
            if len(raw) == 0:
                self._storages[key] = torch.empty(0, dtype=storage_type.dtype)
            else:
                self._storages[key] = torch.frombuffer(raw, dtype=storage_type.dtype)  # (numel,)
        return self._storages[key]


def _flatten(obj: Any, prefix: str, out: dict[str, Tensor]) -> None:
    """Collect every tensor reachable through module attributes / dicts as ``out["a.b.c"] = tensor``."""
    if isinstance(obj, Tensor):
        out[prefix] = obj
    elif isinstance(obj, _ScriptObject):
        _flatten(obj.state, prefix, out)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str):
                _flatten(value, f"{prefix}.{key}" if prefix else key, out)


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"{archive.filename} is not a PyTorch zip archive (no single <name>/data.pkl)")
    return pickles[0].split("/")[0]


def _is_torchscript(archive: zipfile.ZipFile, prefix: str) -> bool:
    names = set(archive.namelist())
    return f"{prefix}/constants.pkl" in names or any(n.startswith(f"{prefix}/code/") for n in names)


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read the tensors of a ``.pt``/``.pth`` file without executing code from it.

    * TorchScript archives (OpenAI's CLIP files): the parameters and buffers (plus any other tensor attributes)
      of every module, named like ``state_dict()`` names them (``visual.conv1.weight``).
    * ``torch.save``'d state dicts: through ``torch.load(weights_only=True)``; a dict holding the state dict
      under ``"state_dict"`` or ``"model"`` is unwrapped.

    Tensors keep their stored dtype (OpenAI's are float16); converting is the caller's choice.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            if _is_torchscript(archive, prefix):
                with archive.open(f"{prefix}/data.pkl") as f:
                    root = _RestrictedUnpickler(f, archive, prefix).load()
                tensors: dict[str, Tensor] = {}
                _flatten(root, "", tensors)
                return tensors
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's own message advises weights_only=False: never do that here
        raise pickle.UnpicklingError(
            f"{path} is a pickle that wants more than tensors ({str(error).splitlines()[0][:200]}). mmcore refuses to "
            "run code from a checkpoint: loading it with weights_only=False would let the file run any program on "
            "your machine. Use the model's safetensors file, or ask its author for one.") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or (safely, see :func:`read_torch_checkpoint`) of a ``.pt`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return read_torch_checkpoint(path)


# ------------------------------------------------------------------------------------------- our checkpoints


def card_path(path: str | os.PathLike) -> Path:
    """The human-readable card beside a checkpoint: ``shapes-tiny.safetensors`` -> ``shapes-tiny.json``."""
    return Path(path).with_suffix(".json")


def save_checkpoint(path: str | os.PathLike, state_dict: dict[str, Tensor], card: dict | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write ``state_dict`` as safetensors (tensors moved to CPU; floating ones cast to ``dtype`` if given, e.g.
    ``torch.float16`` to halve the file) with ``card`` (JSON-able) in its metadata, and the card again as
    ``<name>.json`` beside it. Both files are written to a temporary name first."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = dict(card or {})
    tensors = {name: (t.to(dtype) if dtype is not None and t.is_floating_point() else t).detach().to("cpu").contiguous()
               for name, t in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"card": json.dumps(card)}))
    # the .json beside it also records the tensor file's SHA-256 (a file cannot hold its own hash)
    text = json.dumps({**card, "sha256": sha256_file(path)}, indent=2, ensure_ascii=False) + "\n"
    atomic_write(card_path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def check_tensors(state_dict: dict[str, Tensor], expected: dict[str, Tensor], where: str | os.PathLike) -> None:
    """A clear ValueError when a checkpoint's tensors cannot be the model's: a floating tensor holding NaN or
    infinity, or a tensor whose kind (floating or integer) differs from the model's (``expected``: its state dict,
    meta tensors are fine). Flipped bytes usually show up as one of the two; ``where`` names the file."""
    for name, tensor in state_dict.items():
        reference = expected.get(name)
        if reference is not None and reference.is_floating_point() != tensor.is_floating_point():
            raise ValueError(f"{where}: tensor {name!r} is {tensor.dtype}, but the model needs {reference.dtype}: the "
                             "file is corrupt or belongs to another model. Re-download it (a shipped one: `git "
                             "checkout data/checkpoints`) or retrain it.")
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{where}: tensor {name!r} holds {bad:,} NaN or infinite values of {tensor.numel():,}: "
                             "the file is corrupt. Re-download it (a shipped one: `git checkout data/checkpoints`) "
                             "or retrain it.")


def check_kind(card: dict, path: str | os.PathLike, kind: str, what: str, legacy: tuple[str | None, ...] = ()) -> None:
    """Raise a clear ValueError unless the card's ``"model"`` is ``kind`` (every model's :meth:`save` writes its
    class's full name there, e.g. ``"mmcore.dalle.DALLE"``). ``legacy``: the tags older cards carry."""
    if card.get("model") != kind and card.get("model") not in legacy:
        article = "an" if what[0].lower() in "aeiou" else "a"
        raise ValueError(f"{path} is not {article} {what} checkpoint (its card has model={card.get('model')!r}, "
                         f"expected {kind!r})")


def resolve_checkpoint(name_or_path: str | os.PathLike, shipped_name: str, shipped_path: Path, kind: str,
                       train_hint: str) -> Path:
    """The file behind a model's ``load(name_or_path)``: the shipped checkpoint for ``shipped_name``, else an existing path.

    Raises FileNotFoundError when the shipped file is missing (the message says how to train it: ``train_hint``), and
    ValueError naming ``kind`` when ``name_or_path`` is neither the shipped name nor a file."""
    name = str(name_or_path)
    if name == shipped_name:
        if not shipped_path.is_file():
            raise FileNotFoundError(f"the course checkpoint {shipped_path} does not exist yet: train it with "
                                    f"{train_hint}")
        return shipped_path
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise ValueError(f"unknown {kind} {name!r}: use {shipped_name!r} or a path to a .safetensors file written by "
                     f"{train_hint}")


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, card)`` from a file written by :func:`save_checkpoint` (card from the metadata, else from
    ``<name>.json``, else ``{}``). When ``<name>.json`` records the file's SHA-256, the file must match it (a clear
    ValueError otherwise: flipped bytes are caught before any tensor is used). Reading safetensors runs no code."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    beside = json.loads(card_path(path).read_text(encoding="utf-8")) if card_path(path).is_file() else {}
    expected = beside.get("sha256")
    if expected is not None and sha256_file(path) != expected:
        raise ValueError(f"{path} does not match its card {card_path(path).name} (SHA-256 {sha256_file(path)}, the card "
                         f"says {expected}): the file is corrupt or was replaced. Re-download it (a shipped one: `git "
                         "checkout data/checkpoints`) or retrain it.")
    state_dict = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    card = json.loads(meta["card"]) if "card" in meta else {k: v for k, v in beside.items() if k != "sha256"}
    return state_dict, card


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a unique temporary file beside ``path``, then move it into place in one step: readers see
    the old file or the new one, never a torn one, and two writers never share a temporary file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private (0600); give it normal permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
