"""The profile file format (torch-free; the profiler is ``splitexit.dnn_profiles.profiler``).

A profile is what the environment knows about a DNN, all of it measured by running the model:

* per block: FLOPs (``torch.utils.flop_counter``: conv and matmul), host latency at batch 1
  (median of repeated runs); per exit head the same;
* per split and compression: the payload bytes that go over the uplink;
* per sample, split and compression, and exit: the exit's max-softmax confidence, normalised
  entropy and prediction. Exits on the device side of the split (block <= split) see the
  uncompressed features; exits after it see the tail run on the dequantised payload.

The sample loop runs every sample at batch 1 through the very code that live execution uses, so
the replay environment reproduces live decisions bit for bit.

A profile file is ``NAME.json`` (metadata, schema version, sources) beside ``NAME.npz``
(arrays, loaded with ``allow_pickle=False``).

Camera conditions (schema version 2): a profile may record the per-sample arrays under several
conditions (``splitexit.dnn_profiles.corruptions``): every sample's image corrupted as live mode
corrupts it, then run through the same sample loop; plus cheap image statistics of each
corrupted frame. The arrays then have a leading condition axis (K, N, ...); the first condition
is the clean one, and the profile's 4-D arrays are its slice, so a reader that knows no
conditions sees the clean profile. A profile without the axis (schema version 1, as
SplitExit-v0's) is the single condition "clean".
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitexit.dnn_profiles.corruptions import CORRUPTION_IDS, NUM_SEVERITIES
from splitexit.dnn_profiles.data import NUM_CLASSES
from splitexit.files import atomic_write_bytes, read_regular_file

# The payload encodings of a split tensor (``splitexit.dnn_profiles.model.encode_payload``),
# in the order a profile records them. Defined here, so that reading a profile (what the env
# does) needs no torch.
COMPRESSIONS = ("float32", "float16", "int8")

# Bounds on a profile's files (the shipped ones: 5 KB of JSON, 1.5-10 MB of arrays).
MAX_JSON_BYTES = 16 * 2**20
MAX_ARRAYS_BYTES = 2**30

SCHEMA_VERSION = 1  # a profile without a condition axis (SplitExit-v0's)
CONDITIONS_SCHEMA_VERSION = 2  # with a condition axis
DEFAULT_PROFILE_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn.profile.json"
# The corruption-trained model's profile under every condition of ``corruptions.CONDITIONS``.
ROBUST_PROFILE_PATH = Path(__file__).parent / "data" / "fmnist_multiexit_cnn_robust.profile.json"

# name -> (dtype kind, ndim); shapes are checked against the metadata below.
_ARRAYS = {
    "block_flops": ("i", 1),
    "exit_flops": ("i", 1),
    "block_latency_s": ("f", 1),
    "exit_latency_s": ("f", 1),
    "payload_bytes": ("i", 2),
    "labels": ("i", 1),
    "confidence": ("f", 4),
    "entropy": ("f", 4),
    "prediction": ("i", 4),
}
# The per-sample arrays that gain a leading condition axis (K, N, ...) in schema version 2,
# where ``image_stats`` (K, N, F) joins them.
_PER_SAMPLE = ("confidence", "entropy", "prediction")
_CONDITION_ARRAYS = (*_PER_SAMPLE, "image_stats")


@dataclass
class Profile:
    """Measured behaviour of one multi-exit DNN on one data set. Shapes: S blocks, E exits,
    C compressions, N samples."""

    meta: dict
    block_flops: np.ndarray  # (S,) FLOPs of each block
    exit_flops: np.ndarray  # (E,) FLOPs of each exit head
    block_latency_s: np.ndarray  # (S,) host latency at batch 1
    exit_latency_s: np.ndarray  # (E,)
    payload_bytes: np.ndarray  # (S+1, C) bytes sent at split s; split S sends nothing
    labels: np.ndarray  # (N,)
    confidence: np.ndarray  # (N, S+1, C, E) max softmax
    entropy: np.ndarray  # (N, S+1, C, E) normalised entropy in [0, 1]
    prediction: np.ndarray  # (N, S+1, C, E)
    source: str = field(default="<memory>")
    # With a condition axis: confidence, entropy, prediction (K, N, S+1, C, E) and image_stats
    # (K, N, F) under every condition of ``meta["conditions"]``; the 4-D arrays above are then
    # condition 0's (clean). None for a profile without one.
    by_condition: dict[str, np.ndarray] | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.block_flops)

    @property
    def exit_blocks(self) -> tuple[int, ...]:
        return tuple(self.meta["exit_blocks"])

    @property
    def compressions(self) -> tuple[str, ...]:
        return tuple(self.meta["compressions"])

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    @property
    def torch_threads(self) -> int:
        """The torch thread count the profiler ran its samples at: field ``torch_threads``
        (else the count in ``host``, else 1). Torch's CPU kernels round the last float32 bits
        per thread count, so live execution runs at it
        (:func:`splitexit.dnn_profiles.model.torch_threads`)."""
        if _is_int(self.meta.get("torch_threads")) and self.meta["torch_threads"] >= 1:
            return int(self.meta["torch_threads"])
        found = re.search(r"(\d+) torch threads", str(self.meta.get("host", "")))
        return int(found.group(1)) if found else 1

    @property
    def correct(self) -> np.ndarray:
        """(N, S+1, C, E) whether each exit's prediction is right."""
        return self.prediction == self.labels[:, None, None, None]

    def answers(self, thresholds: np.ndarray) -> np.ndarray:
        """(N, S+1, C, T) index of the exit that answers for each threshold: the first exit
        whose confidence reaches it, else the final exit."""
        thresholds = np.asarray(thresholds, dtype=np.float32)
        passes = self.confidence[..., None, :] >= thresholds[:, None]  # (N, S+1, C, T, E)
        passes[..., -1] = True
        return passes.argmax(-1).astype(np.int8)

    def exit_accuracy(self) -> np.ndarray:
        """(E,) accuracy of each exit without compression (split S: all on the device)."""
        return self.correct[:, -1, 0, :].mean(0)

    # -- camera conditions -------------------------------------------------------------------

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names of the conditions recorded, in axis order; ``("clean",)`` without an axis."""
        if self.by_condition is None:
            return ("clean",)
        return tuple(c["name"] for c in self.meta["conditions"])

    @property
    def num_conditions(self) -> int:
        return len(self.conditions)

    def _per_condition(self, name: str) -> np.ndarray:
        if self.by_condition is None:
            return getattr(self, name)[None]
        return self.by_condition[name]

    @property
    def confidence_by_condition(self) -> np.ndarray:
        """(K, N, S+1, C, E) max softmax under every condition."""
        return self._per_condition("confidence")

    @property
    def entropy_by_condition(self) -> np.ndarray:
        """(K, N, S+1, C, E) normalised entropy under every condition."""
        return self._per_condition("entropy")

    @property
    def prediction_by_condition(self) -> np.ndarray:
        """(K, N, S+1, C, E) predictions under every condition."""
        return self._per_condition("prediction")

    @property
    def image_stats(self) -> np.ndarray | None:
        """(K, N, F) float32 statistics of each corrupted frame (names in
        ``meta["image_stats_names"]``), or None without a condition axis."""
        return None if self.by_condition is None else self.by_condition["image_stats"]

    def condition_index(self, condition: int | str) -> int:
        """The axis index of a condition given by index or name."""
        names = self.conditions
        if isinstance(condition, str):
            if condition not in names:
                raise ValueError(f"condition must be one of {list(names)}, got {condition!r}")
            return names.index(condition)
        if not 0 <= condition < len(names):
            raise ValueError(f"condition index must be in 0..{len(names) - 1}, got {condition}")
        return int(condition)

    def at_condition(self, condition: int | str) -> Profile:
        """The single-condition profile of one condition (views, no copies): its 4-D arrays,
        ``answers`` and ``exit_accuracy`` are that condition's. Saved, it is a version 1 file
        whose ``meta["condition"]`` says which condition it holds."""
        k = self.condition_index(condition)
        if self.by_condition is None:
            return self
        meta = {
            key: v
            for key, v in self.meta.items()
            if key not in ("conditions", "image_stats_names", "image_stats_flops")
        }
        meta.update(schema_version=SCHEMA_VERSION, condition=self.meta["conditions"][k])
        arrays = {name: self.by_condition[name][k] for name in _PER_SAMPLE}
        scalars = {name: getattr(self, name) for name in _ARRAYS if name not in _PER_SAMPLE}
        return Profile(meta=meta, source=self.source, **scalars, **arrays)

    def exit_accuracy_by_condition(self) -> np.ndarray:
        """(K, E) accuracy of each exit under each condition, split S, no compression."""
        pred = self.prediction_by_condition[:, :, -1, 0, :]
        return (pred == self.labels[None, :, None]).mean(1)

    # -- files -------------------------------------------------------------------------------

    def save(self, json_path: str | Path) -> None:
        """Write ``NAME.json`` and ``NAME.npz`` atomically."""
        json_path = Path(json_path)
        npz_path = json_path.with_suffix(".npz")
        buf = io.BytesIO()
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        if self.by_condition is not None:
            arrays.update({k: self.by_condition[k] for k in _CONDITION_ARRAYS})
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        meta = dict(self.meta, arrays_file=npz_path.name)
        meta["arrays_sha256"] = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(npz_path, data)
        atomic_write_bytes(json_path, (json.dumps(meta, indent=2) + "\n").encode())
        self.meta = meta

    @classmethod
    def load(cls, json_path: str | Path = DEFAULT_PROFILE_PATH) -> Profile:
        """Read and validate a profile; errors name the file and the field at fault.

        The metadata's fields and types are checked first, then the arrays file against the
        ``arrays_sha256`` the JSON records (the bytes hashed are the bytes parsed), then every
        array's dtype, shape and value range against the metadata."""
        json_path = Path(json_path)
        raw = read_regular_file(json_path, MAX_JSON_BYTES, "profile file")
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:  # (too deep, too long)
            raise ValueError(f"{json_path}: not valid JSON ({type(err).__name__}: {err})") from None
        _check_meta(meta, json_path)
        # beside the profile's own file, not beside a symlink to it
        npz_path = json_path.resolve().parent / meta["arrays_file"]
        data = read_regular_file(npz_path, MAX_ARRAYS_BYTES, "profile arrays file")
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["arrays_sha256"]:
            raise ValueError(
                f"{npz_path}: contents ({len(data)} bytes) do not match field 'arrays_sha256' "
                f"of {json_path} (recorded {meta['arrays_sha256']}, file hashes to {digest}): "
                f"the arrays file was changed, truncated or replaced after the profile was saved"
            )
        arrays = _checked_arrays(_read_npz(data, meta, npz_path), meta, npz_path)
        if "conditions" not in meta:
            return cls(meta=meta, source=str(json_path), **arrays)
        by_condition = {k: arrays.pop(k) for k in _CONDITION_ARRAYS}
        arrays.update({k: by_condition[k][0] for k in _PER_SAMPLE})
        return cls(meta=meta, source=str(json_path), by_condition=by_condition, **arrays)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _describe(x) -> str:
    text = repr(x)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(x).__name__})"


def _check_meta(meta, path: Path) -> None:
    """Fields and types of a profile's JSON metadata; raises ValueError naming the field."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("schema_version")
    if version not in (SCHEMA_VERSION, CONDITIONS_SCHEMA_VERSION) or not _is_int(version):
        raise ValueError(
            f"{path}: field 'schema_version' is {version!r}, this splitexit reads "
            f"versions {SCHEMA_VERSION} and {CONDITIONS_SCHEMA_VERSION}"
        )
    if (version == CONDITIONS_SCHEMA_VERSION) != ("conditions" in meta):
        raise ValueError(
            f"{path}: field 'conditions' goes with schema_version {CONDITIONS_SCHEMA_VERSION} "
            f"and only with it (schema_version is {version}, 'conditions' is "
            f"{'present' if 'conditions' in meta else 'missing'})"
        )
    for key in (
        "model",
        "num_blocks",
        "exit_blocks",
        "compressions",
        "num_samples",
        "arrays_file",
        "arrays_sha256",
    ):
        if key not in meta:
            raise ValueError(f"{path}: missing field {key!r}")

    def fail(key: str, expected: str) -> ValueError:
        return ValueError(f"{path}: field {key!r} is {_describe(meta[key])}, expected {expected}")

    for key in ("model", "dataset", "weights_sha256", "host", "date"):
        if key in meta and not isinstance(meta[key], str):
            raise fail(key, "a string")
    for key in ("num_blocks", "num_samples", "raw_input_bytes"):
        if key in meta and not (_is_int(meta[key]) and meta[key] >= 1):
            raise fail(key, "an integer >= 1")
    s = meta["num_blocks"]
    blocks = meta["exit_blocks"]
    if not (
        isinstance(blocks, list)
        and blocks
        and all(_is_int(b) and 1 <= b <= s for b in blocks)
        and all(a < b for a, b in zip(blocks, blocks[1:]))
        and blocks[-1] == s
    ):
        raise fail(
            "exit_blocks",
            f"a non-empty, strictly increasing list of block numbers in 1..{s} (num_blocks) "
            f"ending with {s}, the final exit",
        )
    comps = meta["compressions"]
    if not (
        isinstance(comps, list)
        and comps
        and all(isinstance(c, str) and c in COMPRESSIONS for c in comps)
        and len(set(comps)) == len(comps)
    ):
        raise fail("compressions", f"a non-empty list of distinct items of {list(COMPRESSIONS)}")
    name = meta["arrays_file"]
    if not (isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name):
        raise fail("arrays_file", "a file name in the profile's folder (no directories)")
    digest = meta["arrays_sha256"]
    if not (
        isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    ):
        raise fail("arrays_sha256", "a SHA-256 hex digest (64 lowercase hex digits)")
    shapes = meta.get("block_output_shapes")
    if shapes is not None and not (
        isinstance(shapes, list)
        and len(shapes) == s
        and all(
            isinstance(sh, list) and sh and all(_is_int(d) and d >= 1 for d in sh) for sh in shapes
        )
    ):
        raise fail("block_output_shapes", f"a list of {s} (num_blocks) lists of integers >= 1")
    if "profile_time_s" in meta:
        t = meta["profile_time_s"]
        if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < np.inf):
            raise fail("profile_time_s", "a finite number >= 0")
    if "sources" in meta and not isinstance(meta["sources"], dict):
        raise fail("sources", "a JSON object")
    if "conditions" in meta:
        _check_conditions_meta(meta, path, fail)


def _check_conditions_meta(meta: dict, path: Path, fail) -> None:
    """The fields of a profile with a condition axis."""
    conds = meta["conditions"]
    if not (
        isinstance(conds, list)
        and conds
        and all(
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and c["name"]
            and c.get("corruption") in CORRUPTION_IDS
            and _is_int(c.get("severity"))
            and (c["severity"] == 0) == (c["corruption"] == "none")
            and 0 <= c["severity"] <= NUM_SEVERITIES
            for c in conds
        )
        and len({c["name"] for c in conds}) == len(conds)
        and conds[0]["corruption"] == "none"
    ):
        raise fail(
            "conditions",
            "a non-empty list of objects with distinct 'name's, a 'corruption' of "
            f"{sorted(CORRUPTION_IDS)} and a 'severity' (0 for 'none', else 1..{NUM_SEVERITIES}), "
            "the first one clean ('none')",
        )
    if "image_stats_names" not in meta:
        raise ValueError(f"{path}: missing field 'image_stats_names'")
    names = meta["image_stats_names"]
    if not (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        raise fail("image_stats_names", "a non-empty list of distinct names")


def _expected_shapes(meta: dict) -> dict:
    s, e = meta["num_blocks"], len(meta["exit_blocks"])
    c, n = len(meta["compressions"]), meta["num_samples"]
    shapes = {
        "block_flops": (s,),
        "exit_flops": (e,),
        "block_latency_s": (s,),
        "exit_latency_s": (e,),
        "payload_bytes": (s + 1, c),
        "labels": (n,),
        "confidence": (n, s + 1, c, e),
        "entropy": (n, s + 1, c, e),
        "prediction": (n, s + 1, c, e),
    }
    if "conditions" in meta:
        k = len(meta["conditions"])
        for name in _PER_SAMPLE:
            shapes[name] = (k, *shapes[name])
        shapes["image_stats"] = (k, n, len(meta["image_stats_names"]))
    return shapes


# Room for a .npy member's header beyond its data (numpy pads headers to 64 bytes; 4 KiB is
# plenty): a member declaring more is not the array the metadata describes.
_NPY_HEADER_MAX = 4096


def _npy_header(npz, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` member of ``npz`` declares, read without its data."""
    with npz.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"array {name!r}: .npy format version {version} is not supported")
        read = np.lib.format.read_array_header_1_0
        if version == (2, 0):
            read = np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _read_npz(data: bytes, meta: dict, path: Path) -> dict:
    """The arrays of a profile's .npz (``allow_pickle=False``); members are size-checked against
    the metadata's shapes before they are decompressed, so memory stays bounded."""
    expected = _expected_shapes(meta)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            sizes = {i.filename.removesuffix(".npy"): i.file_size for i in npz.zip.infolist()}
            arrays = {}
            for name, shape in expected.items():
                if name not in npz.files:
                    raise ValueError(f"{path}: missing array {name!r}")
                limit = int(np.prod(shape, dtype=object)) * 8 + _NPY_HEADER_MAX
                if sizes.get(name, 0) > limit:
                    raise ValueError(
                        f"{path}: array {name!r} is {sizes[name]} bytes uncompressed, more than "
                        f"an array of shape {shape} can take ({limit} bytes)"
                    )
                declared, dtype = _npy_header(npz, name)
                declared_bytes = int(np.prod(declared, dtype=object)) * dtype.itemsize
                if dtype.hasobject or declared_bytes > limit:
                    raise ValueError(  # checked before numpy allocates what the header says
                        f"{path}: array {name!r} is declared {dtype}{declared}, more than an "
                        f"array of shape {shape} can take ({limit} bytes)"
                    )
                arrays[name] = npz[name]
    except ValueError as err:
        if str(err).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(
            f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None
    return arrays


def _checked_arrays(arrays: dict, meta: dict, path: Path) -> dict:
    """The profile's arrays, checked against ``meta`` (already checked by ``_check_meta``)."""
    expected = _expected_shapes(meta)
    for name, (kind, _) in {**_ARRAYS, "image_stats": ("f", 3)}.items():
        if name not in expected:
            continue
        if name not in arrays:
            raise ValueError(f"{path}: missing array {name!r}")
        a, ndim = arrays[name], len(expected[name])
        if a.dtype.kind not in (kind, "u" if kind == "i" else kind) or a.ndim != ndim:
            raise ValueError(f"{path}: array {name!r} is {a.dtype}{a.shape}, expected {ndim}-D")
    s, e, c = meta["num_blocks"], len(meta["exit_blocks"]), len(meta["compressions"])
    n = len(arrays["labels"])
    if n == 0:
        raise ValueError(f"{path}: array 'labels' is empty, a profile needs at least one sample")
    if n != meta["num_samples"]:
        raise ValueError(
            f"{path}: array 'labels' has {n} samples, field 'num_samples' says "
            f"{meta['num_samples']}"
        )
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(
                f"{path}: array {name!r} has shape {arrays[name].shape}, expected {shape} "
                f"(num_blocks={s}, exits={e}, compressions={c}, samples={n})"
            )
    ranges = {
        "block_flops": (0, np.inf),
        "exit_flops": (0, np.inf),
        "block_latency_s": (0, np.inf),
        "exit_latency_s": (0, np.inf),
        "payload_bytes": (0, np.inf),
        "labels": (0, NUM_CLASSES - 1),
        "confidence": (0.0, 1.0),
        "entropy": (0.0, 1.0),
        "prediction": (0, NUM_CLASSES - 1),
        "image_stats": (0.0, np.inf),
    }
    for name, (lo, hi) in ranges.items():
        if name not in expected:
            continue
        a = arrays[name]
        bad = ~np.isfinite(a) | (a < lo) | (a > hi)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{path}: array {name!r} has value {a[where]} at index {where}, "
                f"outside [{lo}, {hi}]"
            )
    return {k: arrays[k] for k in expected}
