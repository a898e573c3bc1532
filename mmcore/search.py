"""Image search with CLIP embeddings: an index over an image collection, top-k search, recall@k.

**The idea.** CLIP turns an image, and a text, into a vector of ``D`` numbers (an *embedding*; ``D = 512`` for
ViT-B/32). It was trained so that a matching image and caption point in nearly the same direction. To search a
collection we therefore embed every image **once** (the slow part: the model runs) and keep the ``(N, D)``
matrix. A query - a text, or another image - is embedded too, and compared with all ``N`` images.

**Cosine similarity = dot product of unit vectors.** ``cos(a, b) = a . b / (|a| |b|)`` measures the angle between
``a`` and ``b`` and ignores their lengths. After normalising every vector to length 1 it is just ``a . b``, so
comparing ``Q`` queries with ``N`` images is one matrix product ``(Q, D) @ (D, N) -> (Q, N)``; the ``k`` best
images per query are ``torch.topk`` of each row (:func:`cosine_topk`). This *exact* search looks at every image:
for 100,000 images it takes milliseconds, no approximate index needed (FAISS is an optional backend).

**Memory.** Embeddings are stored as float16 unit vectors: 100,000 images x 512 numbers x 2 bytes = 102.4 MB
(float32 would need 204.8 MB). Each search converts ``chunk`` rows at a time to float32 (4,096 x 512 x 4 bytes =
8 MiB), so the float32 copy of the whole matrix never exists.

**Caching.** Re-indexing a folder only runs the model on new or changed files: embeddings are cached on disk
(``$MMCORE_CACHE/search/``, default ``~/.cache/mmcore/search/``) in one safetensors file per model, keyed by the
SHA-256 of each file's bytes (of the pixels, for in-memory images). The model is identified by a hash of its
weights and of every preprocessing parameter (size, mean, std, resampling, crop), so changing or retraining the model
never returns stale embeddings. The cache is checked, not trusted: a damaged row (a flipped byte, a NaN) is
encoded again, and a file that cannot be used is set aside and rebuilt. Several processes may build over one
cache at once; none loses the others' entries (:class:`EmbeddingCache`).

Typical use::

    model, preprocess, tokenizer = mmcore.clip.load("shapes-tiny")
    index = build_index("my_photos/", model, preprocess, tokenizer)   # or a ShapesDataset, a list of images
    for hit in index.search("a red circle", k=5):
        print(f"{hit.score:.3f}  {hit.path or hit.label}")
    index.image(hit.index)                                            # the PIL image of a result

How good is a search? :func:`recall_at_k` (and :meth:`ImageIndex.evaluate`) give the fraction of queries whose
top ``k`` results contain a correct image.
"""
from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import numbers
import os
import re
import threading
import types
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

try:
    import fcntl  # POSIX: an inter-process lock around each cache write
except ImportError:  # Windows: threads are still serialised, and every write merges what it finds on disk
    fcntl = None

from .data import caption
from .images import ImageLoadError, load_image
from .lang import bengali_share
from .weights import atomic_write, default_cache_dir

__all__ = [
    "IMAGE_EXTENSIONS",
    "TopK",
    "SearchResult",
    "cosine_topk",
    "unit_float16",
    "recall_at_k",
    "relevant_items",
    "distinct_attributes",
    "find_images",
    "image_digest",
    "model_fingerprint",
    "EmbeddingCache",
    "encode_images",
    "encode_texts",
    "ImageIndex",
    "build_index",
    "search_results",
    "query_is_cut",
    "query_language",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_CHUNK = 4096  # keys converted to float32 at a time in cosine_topk: 4,096 x 512 x 4 B = 8 MiB

Relevant = Union[Tensor, Sequence[Union[int, Iterable[int]]]]
Query = Union[str, Sequence[str], Image.Image, Sequence[Image.Image], os.PathLike, Tensor]


# ------------------------------------------------------------------------------------------- the maths: top-k


class TopK(NamedTuple):
    """The ``k`` best keys for each query, best first."""
    scores: Tensor  # (Q, k) float32 cosine similarities
    indices: Tensor  # (Q, k) int64 row numbers in ``keys``


def cosine_topk(queries: Tensor, keys: Tensor, k: int, chunk: int = DEFAULT_CHUNK, normalized: bool = False) -> TopK:
    """Exact top-``k`` cosine similarity of every query with every key.

    ``queries`` is ``(Q, D)`` (or ``(D,)``), ``keys`` is ``(N, D)`` in any float dtype (float16 is fine). The
    queries are normalised here, and the keys too unless ``normalized=True`` says they are unit vectors already
    (an :class:`ImageIndex` stores them so; skipping the work makes a search about 1.5x faster). The keys are
    processed ``chunk`` rows at a time in one reused float32 buffer: the best ``k`` of each chunk are kept, and the
    best ``k`` of those are the answer. ``k`` larger than ``N`` is clipped to ``N``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if keys.ndim != 2 or keys.shape[0] == 0:
        raise ValueError(f"keys must be a non-empty (N, D) matrix; got shape {tuple(keys.shape)}")
    q = F.normalize(torch.atleast_2d(queries).float().to(keys.device), dim=-1)  # (Q, D)
    if q.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions but the keys have {keys.shape[1]}")
    k = min(k, keys.shape[0])
    # One float32 buffer for all chunks: allocating a fresh one per chunk costs more than the matrix product.
    buffer = torch.empty(min(chunk, keys.shape[0]), keys.shape[1], device=keys.device)  # (C, D)
    best_scores, best_indices = [], []
    for start in range(0, keys.shape[0], chunk):
        block = buffer[:len(keys[start:start + chunk])].copy_(keys[start:start + chunk])  # (C, D) float32
        if not normalized:
            block.div_(torch.linalg.vector_norm(block, dim=1, keepdim=True).clamp_min_(1e-12))
        scores = q @ block.T  # (Q, C) cosine similarities
        top = scores.topk(min(k, scores.shape[1]), dim=1)  # (Q, k') best of this chunk
        best_scores.append(top.values)
        best_indices.append(top.indices + start)  # row numbers in the whole of ``keys``
    scores, indices = torch.cat(best_scores, dim=1), torch.cat(best_indices, dim=1)  # (Q, chunks * k)
    top = scores.topk(k, dim=1)  # (Q, k)
    return TopK(top.values, indices.gather(1, top.indices))


def unit_float16(vectors: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """``vectors`` ``(N, D)`` normalised to length 1 (in float32, chunk by chunk) and stored as float16."""
    out = torch.empty(vectors.shape, dtype=torch.float16, device=vectors.device)  # (N, D)
    for start in range(0, vectors.shape[0], chunk):
        out[start:start + chunk] = F.normalize(vectors[start:start + chunk].float(), dim=-1)
    return out


# -------------------------------------------------------------------------------------------- evaluation


def _relevance_mask(relevant: Relevant, n_queries: int, n_items: int) -> Tensor:
    """``relevant`` as a bool mask (Q, N): ``mask[q, i]`` is True when item ``i`` is a correct answer to query ``q``."""
    if isinstance(relevant, np.ndarray):
        relevant = torch.from_numpy(relevant)
    if isinstance(relevant, Tensor) and relevant.dtype == torch.bool:
        mask = relevant.cpu()
        if mask.shape != (n_queries, n_items):
            raise ValueError(f"a relevance mask must have shape (queries, items) = {(n_queries, n_items)}; "
                             f"got {tuple(mask.shape)}")
    else:
        rows = relevant.tolist() if isinstance(relevant, Tensor) else list(relevant)
        if len(rows) != n_queries:
            raise ValueError(f"relevant has {len(rows)} entries but there are {n_queries} queries")
        mask = torch.zeros(n_queries, n_items, dtype=torch.bool)
        for q, row in enumerate(rows):
            for i in ([row] if isinstance(row, numbers.Integral) else row):
                if not 0 <= int(i) < n_items:
                    raise ValueError(f"query {q}: relevant position {i} is outside the index (0..{n_items - 1})")
                mask[q, int(i)] = True
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"queries {empty[:10]} have no relevant item: recall is undefined for them")
    return mask


def recall_at_k(query_embeddings: Tensor, index_embeddings: Tensor, relevant: Relevant,
                ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@k: the fraction of queries with at least one correct item among their ``k`` most similar items.

    Args:
        query_embeddings: ``(Q, D)``, e.g. text embeddings of the queries.
        index_embeddings: ``(N, D)``, e.g. the image embeddings of an index (any float dtype).
        relevant: the correct items of each query, as item positions ``0..N-1``: per query an int (one correct
            item) or a set / list of ints (several, e.g. every image with the asked-for attributes); or a bool
            mask ``(Q, N)``. Every query needs at least one correct item.
        ks: the values of ``k``; a ``k`` larger than ``N`` counts as ``N`` (recall 1.0).

    Returns ``{k: recall}``. This is the "R@k" of the CLIP paper's retrieval tables (a query counts as found when
    *any* of its correct items is in the top ``k``). Similarity is cosine; ties are broken arbitrarily.
    """
    mask = _relevance_mask(relevant, torch.atleast_2d(query_embeddings).shape[0], index_embeddings.shape[0])
    top = cosine_topk(query_embeddings, index_embeddings, max(ks))  # (Q, kmax)
    hits = mask.gather(1, top.indices.cpu())  # (Q, kmax): is the item ranked r-th correct?
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def relevant_items(attributes: Sequence[dict[str, str]], **wanted: str) -> list[int]:
    """Positions of the items whose attributes match all of ``wanted``.

    ``relevant_items(dataset.attributes, color="red", shape="circle")`` lists every red circle of a
    ``ShapesDataset``: the correct answers to the query "a red circle", for :func:`recall_at_k`.
    """
    return [i for i, attrs in enumerate(attributes) if all(attrs.get(key) == value for key, value in wanted.items())]


def distinct_attributes(attributes: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """One entry per distinct attribute dict, in first-seen order: the queries of a full-caption search
    evaluation (several images share each full caption, so each caption is asked once)."""
    unique: dict[tuple, dict[str, str]] = {}
    for attrs in attributes:
        unique.setdefault(tuple(sorted(attrs.items())), attrs)
    return list(unique.values())


# ---------------------------------------------------------------------------------- fingerprints and caching


def find_images(folder: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted), by extension (case-insensitive).

    Hidden files and folders (names starting with ``.``, e.g. ``.ipynb_checkpoints``) are left out.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of images")
    extensions = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in extensions and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def image_digest(image: Image.Image) -> str:
    """SHA-256 (hex) of an in-memory image's mode, size and pixel bytes: its cache key."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, tuple[tuple, str]]" = weakref.WeakKeyDictionary()
_DESCRIBE_DEPTH = 8  # how deep _describe follows attributes, closures and containers: far more than any preprocessing


def _describe_preprocess(preprocess: Any) -> str:
    """A stable description of a preprocessing function or object, for the cache key.

    It holds every parameter, so that changing any of them gives another cache: an object (``Preprocess(224)``, a
    torchvision ``Compose``) is described by its class, each of its attributes (``size``, ``mean``, ``std``, a
    resampling mode, a crop, a list of transforms; tensors by a hash of their values) and the code of its
    ``__call__`` (``forward`` for a module); a function by its name and code, its default arguments, the variables
    it closes over and the data it reads from its module (a ``MEAN`` constant, a transform object). So editing that
    code changes the key too. No memory address enters it: the key is the same in every process.
    """
    return _describe(preprocess, 0, frozenset())


def _describe(value: Any, depth: int, seen: frozenset[int]) -> str:
    """``value`` as text for the cache key (see :func:`_describe_preprocess`)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):  # before numbers: PIL's Image.Resampling.BICUBIC is an IntEnum
        return f"{_qualified_name(type(value))}.{value.name}"
    if isinstance(value, numbers.Number):
        return repr(value)
    if isinstance(value, (Tensor, np.ndarray)):
        return _array_digest(value)
    if isinstance(value, types.CodeType):
        return _code_digest(value)
    if depth > _DESCRIBE_DEPTH or id(value) in seen:
        return f"<{_qualified_name(type(value))}>"
    seen = seen | {id(value)}

    def inner(part: Any) -> str:
        return _describe(part, depth + 1, seen)

    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[{', '.join(map(inner, value))}]"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}{{{', '.join(sorted(map(inner, value)))}}}"
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(f"{inner(k)}: {inner(v)}" for k, v in value.items())) + "}"
    if isinstance(value, functools.partial):
        return f"partial({inner(value.func)}, {inner(value.args)}, {inner(value.keywords)})"
    if isinstance(value, types.MethodType):  # a bound method: its object's parameters matter too
        return f"{inner(value.__self__)}.{inner(value.__func__)}"
    if isinstance(value, types.FunctionType):
        return _describe_function(value, inner)
    if isinstance(value, (type, types.ModuleType)) or (not hasattr(value, "__dict__") and hasattr(value, "__qualname__")):
        return _qualified_name(value)  # a class, a module, a built-in function
    if isinstance(value, torch.nn.Module):  # e.g. torchvision's Resize: attributes, own tensors, sub-modules
        fields = {k: v for k, v in vars(value).items() if not k.startswith("_") and k != "training"}
        fields["tensors"] = {**dict(value.named_parameters(recurse=False)), **dict(value.named_buffers(recurse=False))}
        fields["children"] = dict(value.named_children())
        return f"{_qualified_name(type(value))}({inner(fields)}){_method_digest(type(value), 'forward')}"
    if hasattr(value, "__dict__"):  # any other object: its attributes (and what it wraps) and its __call__
        fields = {k: v for k, v in vars(value).items() if not k.startswith("__") or k == "__wrapped__"}
        return f"{_qualified_name(type(value))}({inner(fields)}){_method_digest(type(value), '__call__')}"
    if type(value).__repr__ is not object.__repr__:
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
    return _qualified_name(type(value))


def _describe_function(function: types.FunctionType, inner: Callable[[Any], str]) -> str:
    """A function's name and code, and the values it depends on: defaults, closure, data read from its module."""
    code = function.__code__
    closure = {}
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        with contextlib.suppress(ValueError):  # an empty cell: a variable not assigned yet
            closure[name] = cell.cell_contents
    module_data = {name: function.__globals__[name] for name in code.co_names
                   if name in function.__globals__ and _is_parameter(function.__globals__[name])}
    values = {"defaults": function.__defaults__, "kwdefaults": function.__kwdefaults__, "closure": closure,
              "globals": module_data}
    return f"{function.__module__}.{function.__qualname__}:{_code_digest(code)}{inner(values)}"


def _is_parameter(value: Any) -> bool:
    """Whether a module-level name a function reads can hold a parameter (a number, a tensor, a transform object).
    Functions, classes and modules cannot: their names are part of the function's code already."""
    return not isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType))


def _code_digest(code: types.CodeType) -> str:
    """A hash of a code object: its bytecode, the names it uses and its constants (nested code, e.g. a lambda
    inside, recursively; ``repr`` would give its memory address, which changes from process to process)."""
    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_names).encode())
    for constant in code.co_consts:
        h.update(_describe(constant, 0, frozenset()).encode())
    return h.hexdigest()[:16]


def _method_digest(cls: type, name: str) -> str:
    """``":<hash>"`` of the code of ``cls.<name>`` when it is written in Python, else ``""``."""
    code = getattr(getattr(cls, name, None), "__code__", None)
    return f":{_code_digest(code)}" if code is not None else ""


def _qualified_name(thing: Any) -> str:
    return f"{getattr(thing, '__module__', None) or ''}.{getattr(thing, '__qualname__', getattr(thing, '__name__', '?'))}"


def _tensor_bytes(tensor: Tensor) -> np.ndarray:
    """The raw bytes of a tensor, whatever its dtype, as a flat uint8 array."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _array_digest(array: Tensor | np.ndarray) -> str:
    """dtype, shape and a hash of the values of a tensor or a NumPy array."""
    data = np.ascontiguousarray(array).tobytes() if isinstance(array, np.ndarray) else _tensor_bytes(array).tobytes()
    return f"{array.dtype}{tuple(array.shape)}:{hashlib.sha256(data).hexdigest()[:16]}"


def model_fingerprint(model: Any, preprocess: Any = None) -> str:
    """A short hash identifying ``model``'s weights and ``preprocess``: the name of its embedding cache.

    It hashes the name, dtype, shape and bytes of every tensor of ``model.state_dict()``; this is computed once per
    model and recomputed only when a weight changes (e.g. after more training). An object without a
    ``state_dict`` may instead carry its own ``fingerprint`` string attribute. ``preprocess`` enters with every
    parameter (size, mean, std, resampling, crop, ...): see :func:`_describe_preprocess`.
    """
    if not hasattr(model, "state_dict"):
        own = getattr(model, "fingerprint", None)
        if not isinstance(own, str):
            raise TypeError(f"cannot fingerprint a {type(model).__name__}: it has no state_dict() and no "
                            "'fingerprint' string attribute; pass cache=False to build_index")
        weights = own
    else:
        state = model.state_dict()
        # Tensors change in place during training; their version counters tell us when to hash again.
        try:
            version = tuple((name, t.data_ptr(), t._version) for name, t in state.items())
        except RuntimeError:  # tensors made under torch.inference_mode() have no version counter: always hash
            version = None
        memo = _FINGERPRINTS.get(model)
        if version is not None and memo is not None and memo[0] == version:
            weights = memo[1]
        else:
            h = hashlib.sha256(type(model).__qualname__.encode())
            for name in sorted(state):
                h.update(f"{name}:{state[name].dtype}:{tuple(state[name].shape)}".encode())
                h.update(_tensor_bytes(state[name]))  # the raw bytes, whatever the dtype
            weights = h.hexdigest()
            _FINGERPRINTS[model] = (version, weights)
    return hashlib.sha256(f"{weights}|{_describe_preprocess(preprocess)}".encode()).hexdigest()[:32]


# The cache file. Nothing read from it is trusted: every row carries a checksum, and every size is checked.
_CACHE_FORMAT = "mmcore-search-cache-2"  # 2: a checksum per row
_CHECKSUM_BYTES = 8  # BLAKE2b-64 per row: a flipped byte goes unnoticed with probability 2^-64
_EMBEDDING_DIMS: dict[str, int] = {}  # fingerprint -> the embedding size that model gave (in this process)
_CACHE_LOCK = threading.Lock()  # one cache read or write at a time in this process; flock serialises processes


class _Unusable(Exception):
    """A cache file that cannot be used at all: not safetensors, torn, or not the tensors a cache holds."""


def _file_version(path: Path) -> tuple[int, int, int] | None:
    """Which version of a file is there, as (inode, size, modification time); None when there is none.
    Every write publishes a new file (a rename), so each version has its own."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _digest_matrix(digests: Sequence[bytes]) -> Tensor:
    """32-byte digests -> ``(M, 32)`` uint8."""
    return torch.from_numpy(np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32).copy())


def _checksums(digests: Sequence[bytes], embeddings: Tensor) -> Tensor:
    """``(M, 8)`` uint8: BLAKE2b of each row's digest and embedding bytes, so that a flipped byte of either shows."""
    rows = embeddings.contiguous().view(torch.uint8).numpy()  # (M, 2 D): the float16 bytes of each row
    sums = b"".join(hashlib.blake2b(key + row.tobytes(), digest_size=_CHECKSUM_BYTES).digest()
                    for key, row in zip(digests, rows))
    return torch.from_numpy(np.frombuffer(sums, dtype=np.uint8).reshape(-1, _CHECKSUM_BYTES).copy())


def _read_cache_file(path: Path) -> tuple[Tensor, list[bytes], int]:
    """The rows of a cache file that pass every check: ``(embeddings (M, D) float16, their digests, rows dropped)``.

    The file must hold the three tensors, with their dtypes and matching shapes, else :class:`_Unusable`; then
    each row must be finite and match its checksum, else it is dropped.
    """
    from safetensors.torch import load_file

    try:
        data = load_file(str(path))
    except Exception as error:  # garbage, a torn file, no permission: whatever it is, it is only a cache
        raise _Unusable(f"{type(error).__name__}: {error}") from None
    embeddings, keys, sums = data.get("embeddings"), data.get("sha256"), data.get("checksum")
    if embeddings is None or keys is None or sums is None:
        raise _Unusable(f"it holds the tensors {sorted(data)}, not embeddings, sha256 and checksum")
    if embeddings.dtype != torch.float16 or embeddings.ndim != 2 or embeddings.shape[1] == 0:
        raise _Unusable(f"its embeddings are {embeddings.dtype} {tuple(embeddings.shape)}, not float16 (M, D)")
    m = embeddings.shape[0]
    for name, tensor, width in (("sha256", keys, 32), ("checksum", sums, _CHECKSUM_BYTES)):
        if tensor.dtype != torch.uint8 or tuple(tensor.shape) != (m, width):
            raise _Unusable(f"its {name} tensor is {tensor.dtype} {tuple(tensor.shape)}, not uint8 {(m, width)}")
    raw = keys.numpy().tobytes()
    digests = [raw[32 * i:32 * (i + 1)] for i in range(m)]
    good = torch.isfinite(embeddings).all(dim=1) & (_checksums(digests, embeddings) == sums).all(dim=1)  # (M,)
    if bool(good.all()):
        return embeddings, digests, 0
    kept = [d for d, ok in zip(digests, good.tolist()) if ok]
    return embeddings[good], kept, m - len(kept)  # (M', D)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold the lock of one cache: other threads of this process wait, and on POSIX other processes too.

    The inter-process lock is ``fcntl.flock`` on ``lock_path``, a file beside the cache that is deleted on release
    (so none lingers). Where flock is missing (Windows) or refused (some network file systems) only threads are
    serialised; every write still merges what it finds on disk and publishes atomically.
    """
    with _CACHE_LOCK:
        fd = _flock(lock_path) if fcntl is not None else None
        try:
            yield
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)  # while we hold it: whoever then locks the deleted file tries again
                os.close(fd)  # releases the lock


def _flock(lock_path: Path) -> int | None:
    """Lock ``lock_path`` exclusively, waiting for its holder; the open file, or None where locking is impossible."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None  # e.g. a read-only cache folder: nothing will be written there either
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException as error:
            os.close(fd)
            if isinstance(error, OSError):
                return None  # flock refused: go on without the inter-process lock
            raise
        if _is_file_at(fd, lock_path):
            return fd
        os.close(fd)  # its holder deleted the file we locked while we waited: lock the new one


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class EmbeddingCache:
    """Embeddings of one model, keyed by the SHA-256 of the content they were computed from.

    Stored in ``<root>/search/<fingerprint>.safetensors`` (``root``: ``$MMCORE_CACHE`` or ``~/.cache/mmcore``) as
    three tensors: ``embeddings`` float16 ``(M, D)``, ``sha256`` uint8 ``(M, 32)`` and ``checksum`` uint8
    ``(M, 8)`` (BLAKE2b of each row's digest and embedding). safetensors files hold only tensors (no pickle, no code).

    Nothing read is trusted. A row that is not finite or fails its checksum is dropped (its image is encoded again,
    with a warning). A file that cannot be read at all (garbage, torn, wrong tensors), or whose embeddings have
    another size than the model's, is set aside as ``<name>.bad`` with a warning and rebuilt: never an error.

    Builders may share a cache, in threads or processes: :meth:`save` holds a lock (``fcntl.flock`` on
    ``<name>.lock``, beside the file, on POSIX), takes in what others saved since we read the file, and writes a
    temporary file of its own that an atomic rename publishes. So no entry is lost and no reader sees half a file.
    """

    def __init__(self, fingerprint: str, root: str | os.PathLike | None = None) -> None:
        base = Path(root).expanduser() if root is not None else default_cache_dir()
        self.fingerprint = fingerprint
        self.path = base / "search" / f"{fingerprint}.safetensors"
        self._stored = torch.empty(0, 0, dtype=torch.float16)  # (M, D) rows read from the file
        self._row: dict[bytes, int] = {}  # digest -> row of _stored
        self._new: dict[bytes, Tensor] = {}  # digest -> (D,) embedding added since the last save
        self._seen: tuple[int, int, int] | None = None  # the file version read or written last
        if self.path.exists():
            with self._locked():
                self._read()
        if fingerprint in _EMBEDDING_DIMS:
            self._keep_only_size(_EMBEDDING_DIMS[fingerprint])

    def __len__(self) -> int:
        return len(self._row) + len(self._new)

    @property
    def dim(self) -> int | None:
        """The size ``D`` of the embeddings held (None while there are none)."""
        if self._row:
            return self._stored.shape[1]
        return next(iter(self._new.values())).shape[0] if self._new else None

    @property
    def size_known(self) -> bool:
        """Whether this model's embedding size is known (it encoded an image in this process), so that the cached
        rows have been checked against it; until then :func:`build_index` encodes an image to learn it."""
        return self.fingerprint in _EMBEDDING_DIMS

    def get(self, digest: str) -> Tensor | None:
        """The cached ``(D,)`` float16 embedding for a hex ``digest``, or None."""
        key = bytes.fromhex(digest)
        if key in self._new:
            return self._new[key]
        row = self._row.get(key)
        return None if row is None else self._stored[row]

    def put(self, digest: str, embedding: Tensor) -> None:
        """Remember one ``(D,)`` embedding (kept in memory until :meth:`save`); embeddings of another size held so far
        are forgotten."""
        embedding = embedding.detach().to("cpu", torch.float16)
        self._keep_only_size(embedding.shape[0])
        self._new[bytes.fromhex(digest)] = embedding

    def expect_dim(self, dim: int) -> None:
        """Tell the cache that the model gives ``dim``-dimensional embeddings (remembered for this model in this
        process: :attr:`size_known`). Embeddings of another size (a file written by something else) are forgotten,
        and their file set aside, with a warning."""
        _EMBEDDING_DIMS[self.fingerprint] = dim
        self._keep_only_size(dim)

    def _keep_only_size(self, dim: int) -> None:
        held = self.dim
        if held is None or held == dim:
            return
        if self._row:
            with self._locked():
                self._set_aside(self._seen, "wrong-size", f"it holds {held}-dimensional embeddings but the model "
                                f"gives {dim}")
        self._stored, self._row, self._new = torch.empty(0, 0, dtype=torch.float16), {}, {}

    def save(self) -> None:
        """Write the new embeddings (if any) to the cache file: under the lock, after taking in what other builders
        saved since we read it, through a temporary file of our own and an atomic rename."""
        if not self._new:
            return
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._read()  # what other builders saved meanwhile (nothing to do if the file is the one we read)
            keys = list(self._row) + list(self._new)
            new = torch.stack(list(self._new.values()))  # (M', D)
            embeddings = torch.cat([self._stored, new]) if self._row else new  # (M + M', D)
            tensors = {"embeddings": embeddings.contiguous(), "sha256": _digest_matrix(keys),
                       "checksum": _checksums(keys, embeddings)}
            atomic_write(self.path, lambda temporary: save_file(tensors, str(temporary),
                                                                 metadata={"format": _CACHE_FORMAT}))
            self._stored, self._row, self._new = embeddings, {key: i for i, key in enumerate(keys)}, {}
            self._seen = _file_version(self.path)

    def _locked(self) -> contextlib.AbstractContextManager:
        return _exclusive(self.path.with_name(self.path.name + ".lock"))

    def _read(self) -> None:
        """Take in the usable rows of the cache file that we do not hold yet (call with the lock held)."""
        version = _file_version(self.path)
        if version is None or version == self._seen:  # no file, or the one we read or wrote last
            self._seen = version
            return
        self._seen = version
        try:
            embeddings, digests, dropped = _read_cache_file(self.path)
        except _Unusable as error:
            self._set_aside(version, "unreadable", str(error))
            return
        if dropped:
            warnings.warn(f"dropped {dropped} damaged {'entry' if dropped == 1 else 'entries'} of the search cache "
                          f"{self.path} (not finite, or not matching their checksum): those images are encoded again",
                          stacklevel=4)
        if self.dim not in (None, embeddings.shape[1]):  # ours came from the model: the file's are wrong
            self._set_aside(version, "wrong-size", f"it holds {embeddings.shape[1]}-dimensional embeddings but the "
                            f"model gives {self.dim}")
            return
        self._absorb(embeddings, digests)

    def _absorb(self, embeddings: Tensor, digests: list[bytes]) -> None:
        """Add the rows of ``embeddings`` ``(M, D)`` whose digests we do not hold yet."""
        fresh = list({d: i for i, d in enumerate(digests) if d not in self._row and d not in self._new}.values())
        if not fresh:
            return
        rows = embeddings if len(fresh) == len(digests) else embeddings[fresh]  # (m, D)
        start = len(self._row)
        self._stored = torch.cat([self._stored, rows]) if self._row else rows  # (M + m, D)
        self._row.update({digests[i]: start + j for j, i in enumerate(fresh)})

    def _set_aside(self, version: tuple[int, int, int] | None, kind: str, detail: str) -> None:
        """Move the cache file (if it is still ``version``) out of the way, to ``<name>.bad``, and say so in a
        warning. Call with the lock held."""
        bad = self.path.with_name(self.path.name + ".bad")
        action = "another builder has replaced it since"
        if version is not None and _file_version(self.path) == version:
            try:
                os.replace(self.path, bad)
                action = f"moved it to {bad.name}"
            except OSError as error:
                action = f"could not move it ({error}), the next save overwrites it"
        warnings.warn(f"set aside the {kind} search cache {self.path} ({detail}): {action}; its images are encoded "
                      "again and the cache is rebuilt", stacklevel=4)


def _save_cache(store: EmbeddingCache) -> None:
    """Save the cache; a failure (a full disk, a read-only folder) is a warning: the index itself is fine."""
    try:
        store.save()
    except OSError as error:
        warnings.warn(f"could not save the search cache {store.path} ({error}): the index is complete, but its new "
                      "images will be encoded again next time", stacklevel=3)


# -------------------------------------------------------------------------------------------------- encoding


def _device_of(model: Any) -> torch.device:
    """Where the model's weights live (the CPU for a model without parameters)."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


@torch.inference_mode()
def encode_images(model: Any, preprocess: Callable[[Image.Image], Tensor], images: Sequence[Image.Image]) -> Tensor:
    """Unit-length float32 embeddings ``(B, D)`` of a batch of PIL images (one forward pass, no gradients)."""
    batch = torch.stack([preprocess(image) for image in images]).to(_device_of(model))  # (B, 3, H, W)
    return F.normalize(model.encode_image(batch).float(), dim=-1)  # (B, D)


@torch.inference_mode()
def encode_texts(model: Any, tokenizer: Callable[..., Tensor], texts: Sequence[str], truncate: bool = False) -> Tensor:
    """Unit-length float32 embeddings ``(B, D)`` of texts.

    A text longer than the model reads raises the tokenizer's clear error (as zero-shot does), unless
    ``truncate=True`` cuts it, like OpenAI's ``clip.tokenize(..., truncate=True)``: a visible choice, never silent.
    """
    if tokenizer is None:
        raise ValueError("this index has no tokenizer: pass tokenizer= to build_index to search with text")
    tokens = tokenizer(list(texts), truncate=truncate).to(_device_of(model))  # (B, L)
    return F.normalize(model.encode_text(tokens).float(), dim=-1)  # (B, D)


# ------------------------------------------------------------------------------------------------ collections


class _Item(NamedTuple):
    """One thing to index: its file (if any), and how to get its image and label."""
    path: str | None  # the file, for images read from disk
    fetch: Callable[[], tuple[Image.Image, str | None]]  # -> (PIL image, label); may raise ImageLoadError


def _pair(entry: Any, position: int) -> tuple[Image.Image, str | None]:
    """Check that a dataset gave an ``(image, caption)`` pair with a PIL image."""
    if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], Image.Image)):
        raise TypeError(f"item {position} of the dataset is not a (PIL image, caption) pair but a "
                        f"{type(entry).__name__}: create the dataset with transform=None, preprocess does the rest")
    return entry[0], entry[1] if isinstance(entry[1], str) else None


def _item(entry: Any, position: int, lang: str) -> _Item:
    """The :class:`_Item` of one element of a list: a path, a PIL image, a Photo, or an (image, caption) pair."""
    if isinstance(entry, (str, os.PathLike)):
        path = str(entry)
        return _Item(path, lambda: (load_image(path), None))
    if isinstance(entry, Image.Image):
        return _Item(None, lambda: (entry, None))
    if hasattr(entry, "image") and hasattr(entry, "label_en"):  # mmcore.data.Photo
        return _Item(None, lambda: (entry.image, entry.label_bn if lang == "bn" else entry.label_en))
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], Image.Image):
        return _Item(None, lambda: _pair(entry, position))
    raise TypeError(f"cannot index item {position} of type {type(entry).__name__}: use a folder, file paths, PIL "
                    "images, (image, caption) pairs (e.g. a ShapesDataset) or mmcore.data.sample_photos()")


def _items(collection: Any, lang: str) -> list[_Item]:
    """Turn any supported collection into a list of :class:`_Item` (no image is loaded yet)."""
    if isinstance(collection, (str, os.PathLike)):
        collection = find_images(collection)
        if not collection:
            raise ValueError("nothing to index: the folder has no image files "
                             f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, in subfolders too)")
    if isinstance(collection, (list, tuple)):
        return [_item(entry, i, lang) for i, entry in enumerate(collection)]
    # A dataset (e.g. ShapesDataset) renders its images on access: ask it again whenever an image is needed,
    # instead of keeping N images in memory.
    return [_Item(None, lambda i=i: _pair(collection[i], i)) for i in range(len(collection))]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Indexing images", unit="img", disable=not enabled)


# ------------------------------------------------------------------------------------------------- the index


class SearchResult(NamedTuple):
    """One search hit."""
    index: int  # position in the index: index.image(result.index) gives the image
    score: float  # cosine similarity with the query, in [-1, 1]
    path: str | None  # the file, for images read from disk
    label: str | None  # the caption / label, for datasets and photos


class ImageIndex:
    """Unit-length float16 embeddings ``(N, D)`` of an image collection, with what is needed to search them.

    Build one with :func:`build_index`. ``ImageIndex(embeddings)`` alone also works, for searching with embedding
    tensors (as the benchmark does).

    Attributes:
        embeddings: ``(N, D)`` float16 unit vectors; 100,000 x 512 take 102.4 MB (:attr:`memory_bytes`).
        paths, labels: per item, its file path and its caption / label (``None`` where unknown).
        attributes: per item, its Shapes attributes when the collection was a Shapes dataset (else ``None``):
            :func:`search_results` then captions each hit in the language of the query.
        skipped: ``(path, reason)`` for every file that could not be read during indexing.
        n_encoded, n_cached: how many images the model encoded, and how many came from the on-disk cache.
        backend: ``"torch"`` (exact, default) or ``"faiss"`` (exact ``IndexFlatIP``; needs ``pip install
            faiss-cpu``, the ``faiss`` extra; keeps its own float32 copy of the embeddings, twice the memory).
    """

    def __init__(self, embeddings: Tensor, *, paths: Sequence[str | None] | None = None,
                 labels: Sequence[str | None] | None = None,
                 loaders: Sequence[Callable[[], Image.Image]] | None = None, model: Any = None,
                 preprocess: Callable[[Image.Image], Tensor] | None = None,
                 tokenizer: Callable[..., Tensor] | None = None, backend: str = "torch",
                 skipped: Sequence[tuple[str, str]] = (),
                 attributes: Sequence[dict[str, str]] | None = None) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"an index needs a non-empty (N, D) embedding matrix; got shape {tuple(embeddings.shape)}")
        if backend not in ("torch", "faiss"):
            raise ValueError(f"backend must be 'torch' or 'faiss'; got {backend!r}")
        n = embeddings.shape[0]
        self.embeddings = unit_float16(embeddings.detach())  # (N, D) float16 unit vectors
        self.paths = list(paths) if paths is not None else [None] * n
        self.labels = list(labels) if labels is not None else [None] * n
        self._loaders = list(loaders) if loaders is not None else None
        if not len(self.paths) == len(self.labels) == n or (self._loaders is not None and len(self._loaders) != n):
            raise ValueError("paths, labels and loaders must have one entry per embedding")
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.backend = backend
        self.skipped = list(skipped)
        self.attributes = list(attributes) if attributes is not None else None  # Shapes attributes, to caption hits
        if self.attributes is not None and len(self.attributes) != n:
            raise ValueError("attributes must have one entry per embedding")
        self.n_encoded, self.n_cached = 0, 0
        self._faiss = None  # built on the first FAISS search
        if backend == "faiss":
            _import_faiss()  # fail now, with a clear message, if it is not installed

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def __repr__(self) -> str:
        return (f"ImageIndex({len(self)} images, dim={self.embeddings.shape[1]}, backend={self.backend!r}, "
                f"{self.memory_bytes / 1e6:.1f} MB, {len(self.skipped)} skipped)")

    @property
    def memory_bytes(self) -> int:
        """Bytes of embeddings held: N x D x 2 for the float16 matrix, plus N x D x 4 once FAISS has its copy."""
        faiss_copy = self._faiss.ntotal * self._faiss.d * 4 if self._faiss is not None else 0
        return self.embeddings.numel() * self.embeddings.element_size() + faiss_copy

    def image(self, i: int) -> Image.Image:
        """The PIL image of item ``i`` (read again from disk, or re-rendered, for folders and datasets)."""
        if self._loaders is None:
            raise ValueError("this index was built from embeddings only: it has no images")
        return self._loaders[i]()

    def embed(self, query: Query, truncate: bool = False) -> Tensor:
        """Unit-length float32 embeddings ``(Q, D)`` of a query: text(s), image(s), image path(s) or embeddings.
        ``truncate``: cut texts longer than the model reads (else they raise a clear error)."""
        if isinstance(query, Tensor):
            return F.normalize(torch.atleast_2d(query).float(), dim=-1)
        queries = [query] if isinstance(query, (str, os.PathLike, Image.Image)) else list(query)
        if not queries:
            raise ValueError("the query list is empty")
        if all(isinstance(q, str) for q in queries):
            return encode_texts(self._model(), self.tokenizer, queries, truncate)
        if all(isinstance(q, (os.PathLike, Image.Image)) for q in queries):
            images = [q if isinstance(q, Image.Image) else load_image(q) for q in queries]
            return encode_images(self._model(), self.preprocess, images)
        raise TypeError("a query is a text, a PIL image, an image path (pathlib.Path), an embedding tensor, or a "
                        "list of one kind of these")

    def _model(self) -> Any:
        if self.model is None:
            raise ValueError("this index has no model: search it with embedding tensors, or use build_index")
        return self.model

    def topk(self, queries: Tensor, k: int) -> TopK:
        """The ``k`` nearest items of each embedding in ``queries`` ``(Q, D)``, with the index's backend."""
        if self.backend == "faiss":
            return self._faiss_topk(queries, k)
        return cosine_topk(queries, self.embeddings, k, normalized=True)

    def search(self, query: Query, k: int = 5, truncate: bool = False) -> list[SearchResult] | list[list[SearchResult]]:
        """The ``k`` images most similar to ``query``, best first.

        ``query``: a text (tokenised with the index's tokenizer), a PIL image, a ``pathlib.Path`` to an image, an
        embedding ``(D,)``, or a list of those / a ``(Q, D)`` tensor. One query gives a list of
        :class:`SearchResult`; a list of queries gives one such list per query. If ``k`` exceeds the number of
        images, all images are returned (``k`` is clipped to ``len(index)``). A text longer than the model reads
        raises a clear error unless ``truncate=True``.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int; got {k!r}")
        single = isinstance(query, (str, os.PathLike, Image.Image)) or (isinstance(query, Tensor) and query.ndim == 1)
        top = self.topk(self.embed(query, truncate), k)  # (Q, k)
        results = [[SearchResult(i, s, self.paths[i], self.labels[i])
                    for s, i in zip(scores.tolist(), indices.tolist())]
                   for scores, indices in zip(top.scores, top.indices)]
        return results[0] if single else results

    def evaluate(self, queries: Sequence[str] | Tensor, relevant: Relevant,
                 ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
        """Recall@k of text ``queries`` (or query embeddings): see :func:`recall_at_k` for ``relevant``."""
        return recall_at_k(self.embed(queries), self.embeddings, relevant, ks)

    def _faiss_topk(self, queries: Tensor, k: int) -> TopK:
        faiss = _import_faiss()
        if self._faiss is None:
            keys = self.embeddings.float().cpu()  # (N, D) float32: exactly the vectors that cosine_topk multiplies
            self._faiss = faiss.IndexFlatIP(keys.shape[1])  # exact inner-product search
            self._faiss.add(keys.numpy())
        q = F.normalize(torch.atleast_2d(queries).float().cpu(), dim=-1)  # (Q, D)
        if q.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries have {q.shape[1]} dimensions but the index has {self.embeddings.shape[1]}")
        scores, indices = self._faiss.search(q.numpy(), min(k, len(self)))  # (Q, k) numpy arrays
        return TopK(torch.from_numpy(scores), torch.from_numpy(indices).long())


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError("backend='faiss' needs FAISS, an optional dependency: pip install -e '.[faiss]' "
                          "(the course's 'faiss' extra) or pip install faiss-cpu "
                          "(or use the default backend='torch', which is exact too)") from None
    return faiss


def build_index(collection: Any, model: Any, preprocess: Callable[[Image.Image], Tensor],
                tokenizer: Callable[..., Tensor] | None = None, *, batch_size: int = 64,
                cache: bool | str | os.PathLike = True, progress: bool = True, backend: str = "torch",
                lang: str = "en") -> ImageIndex:
    """Embed every image of ``collection`` with ``model`` and return an :class:`ImageIndex`.

    Args:
        collection: a folder (searched recursively for :data:`IMAGE_EXTENSIONS`), a list of file paths, a list of
            PIL images, a dataset of ``(image, caption)`` pairs such as ``mmcore.data.ShapesDataset``, or
            ``mmcore.data.sample_photos()``.
        model, preprocess, tokenizer: as returned by ``mmcore.clip.load`` (the model in eval mode, as ``load``
            returns it); ``tokenizer`` is needed for text search. Any object with ``encode_image`` (and
            ``encode_text``) works: the model runs on its own device, the index lives on the CPU.
        batch_size: images per forward pass (run under ``torch.inference_mode()``).
        cache: ``True`` keeps embeddings in ``$MMCORE_CACHE/search`` (or ``~/.cache/mmcore/search``), so only new
            or changed images are encoded next time; a path uses that folder instead of ``$MMCORE_CACHE``;
            ``False`` switches caching off.
        progress: show a tqdm progress bar.
        backend: ``"torch"`` or ``"faiss"`` (see :class:`ImageIndex`).
        lang: which label of ``sample_photos()`` to use, ``"en"`` or ``"bn"``.

    Files that cannot be read (corrupt, truncated, not really an image) are skipped: they are listed in
    ``index.skipped`` and summarised in one warning. Raises ``ValueError`` if nothing could be indexed.
    """
    items = _items(collection, lang)
    if not items:
        raise ValueError("nothing to index: the collection is empty")
    store = None
    if cache is not False:
        store = EmbeddingCache(model_fingerprint(model, preprocess), None if cache is True else cache)
    rows: list[Tensor | None] = [None] * len(items)  # (D,) float16 embedding of each item
    labels: list[str | None] = [None] * len(items)
    skipped: list[tuple[str, str]] = []
    pending: list[tuple[int, str, Image.Image]] = []  # (position, digest, image) waiting for the model
    n_cached = 0

    def encode_pending() -> None:
        embeddings = encode_images(model, preprocess, [image for _, _, image in pending]).half().cpu()  # (B, D)
        if store is not None:
            store.expect_dim(embeddings.shape[1])  # a cache of another size is set aside
        for (position, digest, _), embedding in zip(pending, embeddings):
            rows[position] = embedding
            if store is not None:
                store.put(digest, embedding)
        pending.clear()

    bar = _progress(len(items), progress)
    try:
        for position, item in enumerate(items):
            check_size = False  # encode this image at once, to learn the model's embedding size
            try:
                data = None
                if item.path is not None:  # a file: hash its bytes; decode those same bytes only if the cache misses
                    if not Path(item.path).is_file():  # a FIFO or device would block the read forever
                        raise ImageLoadError(f"{item.path}: not a regular file (a pipe, socket or device)")
                    data = Path(item.path).read_bytes()
                    digest, image = hashlib.sha256(data).hexdigest(), None
                else:  # an in-memory image: hash its pixels
                    image, labels[position] = item.fetch()
                    digest = image_digest(image)
                cached = store.get(digest) if store is not None else None
                if cached is not None and not store.size_known:  # not yet checked against the model's size:
                    cached, check_size = None, True  # encoding this image checks the whole cache (expect_dim)
                if cached is not None:
                    rows[position], n_cached = cached, n_cached + 1
                else:  # (decoding the hashed bytes: a file replaced meanwhile cannot be cached under the old hash)
                    pending.append((position, digest, image if image is not None else load_image(data)))
            except (ImageLoadError, OSError) as error:
                skipped.append((item.path or f"item {position}", str(error)))
            if len(pending) == batch_size or (check_size and pending):
                encode_pending()
            bar.update(1)
        if pending:
            encode_pending()
    finally:
        bar.close()
        if store is not None:
            _save_cache(store)  # also after an interruption: the work done so far is kept

    if skipped:
        listed = "; ".join(reason.rstrip(". ") for _, reason in skipped[:3])  # each reason names its file
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        warnings.warn(f"skipped {len(skipped)} of {len(items)} files that could not be read: {listed}{more}. "
                      "See index.skipped for the full list.", stacklevel=2)
    kept = [i for i, row in enumerate(rows) if row is not None]
    if not kept:
        raise ValueError(f"nothing to index: none of the {len(items)} files could be read (see the warning above)")
    index = ImageIndex(torch.stack([rows[i] for i in kept]), paths=[items[i].path for i in kept],
                       labels=[labels[i] for i in kept],
                       loaders=[lambda fetch=items[i].fetch: fetch()[0] for i in kept], model=model,
                       preprocess=preprocess, tokenizer=tokenizer, backend=backend, skipped=skipped,
                       attributes=_shapes_attributes(collection, kept))
    index.n_cached, index.n_encoded = n_cached, len(kept) - n_cached
    return index


def _shapes_attributes(collection: Any, kept: Sequence[int]) -> list[dict[str, str]] | None:
    """The attributes of the kept items of a Shapes dataset (one with ``.attributes``), else None."""
    attributes = getattr(collection, "attributes", None)
    if isinstance(collection, (str, os.PathLike, list, tuple)) or attributes is None:
        return None
    return [dict(attributes[i]) for i in kept]


def query_language(text: str) -> str:
    """``"bn"`` when most letters of ``text`` are Bengali, else ``"en"``."""
    return "bn" if bengali_share(text) >= 0.5 else "en"


def search_results(index: ImageIndex, query_text: str, k: int = 8, lang: str | None = None,
                   truncate: bool = True) -> list[tuple[Image.Image, str, float]]:
    """What a search box shows for ``query_text``: ``(image, caption, score)`` for the ``k`` best images.

    The caption of a Shapes picture is written in ``lang`` (default: the query's own language, so a Bengali query
    gets Bengali captions); other items show their label, else their file name. A blank query gives an empty list
    (nothing typed yet). A query longer than the model reads is cut to fit (``truncate``; the search box says so,
    see :func:`query_is_cut`). This is the callback behind lesson 02's search widget, kept free of any widget code so
    that it can be tested.
    """
    if not query_text.strip():
        return []
    lang = lang or query_language(query_text)

    def caption_of(hit: SearchResult) -> str:
        if index.attributes is not None:
            return caption(index.attributes[hit.index], lang)
        return hit.label or Path(hit.path or f"#{hit.index}").name

    hits = index.search(query_text.strip(), k=k, truncate=truncate)
    return [(index.image(hit.index), caption_of(hit), hit.score) for hit in hits]


def query_is_cut(index: ImageIndex, query_text: str) -> bool:
    """True when ``query_text`` is longer than the index's model reads (so a truncating search cuts it)."""
    tokenizer = index.tokenizer
    limit = getattr(tokenizer, "context_length", None)
    return bool(limit and query_text.strip() and len(tokenizer.encode(query_text.strip())) + 2 > limit)
