"""The profiler: runs a multi-exit model over a data set and records a :class:`Profile`.

Every sample runs alone (batch 1) through the code live execution uses, so that replay
reproduces live decisions bit for bit; ``jobs`` > 1 profiles chunks of samples in worker
processes, one torch thread each, with the same result.
"""

from __future__ import annotations

import datetime as dt
import platform
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

from splitexit.dnn_profiles.corruptions import (
    CORRUPTION_IDS,
    EVAL_SALT,
    IMAGE_STATS_NAMES,
    Condition,
    apply_condition,
    corruption_set,
    image_stats,
    image_stats_flops,
)
from splitexit.dnn_profiles.data import Dataset
from splitexit.dnn_profiles.profile import (
    _PER_SAMPLE,
    COMPRESSIONS,
    CONDITIONS_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Profile,
)

if TYPE_CHECKING:
    import torch

    from splitexit.dnn_profiles.model import MultiExitModel

WORKER_THREADS = 1  # torch threads of each profiling process with jobs > 1


def _median_latency_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measure_blocks(model: MultiExitModel, image: np.ndarray, repeats: int = 50) -> dict:
    """FLOPs and host latency at batch 1 of every block and exit head; block output shapes."""
    import torch

    with torch.no_grad():
        return _measure_blocks(model, image, repeats)


def _measure_blocks(model: MultiExitModel, image: np.ndarray, repeats: int) -> dict:
    x = model.images_to_input(image[None])
    out = {"block_flops": [], "block_latency_s": [], "exit_flops": [], "exit_latency_s": []}
    shapes = []
    for b, block in enumerate(model.blocks, start=1):
        out["block_flops"].append(_count_flops(lambda: block(x)))  # noqa: B023
        out["block_latency_s"].append(_median_latency_s(lambda: block(x), repeats))  # noqa: B023
        x = block(x)
        shapes.append(list(x.shape[1:]))
        if b in model.exit_blocks:
            head = model.exits[str(b)]
            out["exit_flops"].append(_count_flops(lambda: head(x)))  # noqa: B023
            out["exit_latency_s"].append(_median_latency_s(lambda: head(x), repeats))  # noqa: B023
    arrays = {
        k: np.asarray(v, dtype=np.int64 if "flops" in k else np.float64) for k, v in out.items()
    }
    return {"arrays": arrays, "block_output_shapes": shapes}


def host_description() -> str:
    """The CPU, this process's torch thread count (the latencies') and the versions."""
    import torch

    return (
        f"{platform.machine()} {platform.processor() or platform.system()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def profile(
    model: MultiExitModel,
    dataset: Dataset,
    weights_sha256: str = "",
    latency_repeats: int = 50,
    log=None,
    conditions: tuple[Condition, ...] | None = None,
    noise_salt: int = EVAL_SALT,
    compressions: tuple[str, ...] = COMPRESSIONS,
    jobs: int = 1,
) -> Profile:
    """Run ``model`` over ``dataset`` once per split and compression, at batch 1.

    With ``conditions`` (such as ``corruptions.CONDITIONS``; the first must be clean), every
    sample is recorded under every condition, its image corrupted as live mode corrupts it:
    ``apply_condition(image, condition, i, noise_salt)`` with ``i`` its position in ``dataset``
    (the test index for the shipped test split or its first N samples). Schema version 2.

    ``compressions``: the payload formats recorded (a subset of ``COMPRESSIONS``, in its
    order). ``jobs`` > 1 profiles the samples in that many worker processes (same numbers
    as one process with one torch thread)."""
    import torch

    if conditions is not None:
        conditions = tuple(conditions)
        if not conditions or conditions[0].corruption != "none":
            raise ValueError("conditions must start with the clean one (corruption 'none')")
        if len({c.name for c in conditions}) != len(conditions):
            raise ValueError(f"condition names must be distinct: {[c.name for c in conditions]}")
    compressions = tuple(c for c in COMPRESSIONS if c in compressions)
    if not compressions:
        raise ValueError(f"compressions must name some of {COMPRESSIONS}")
    with torch.no_grad():
        return _profile(
            model,
            dataset,
            weights_sha256,
            latency_repeats,
            log,
            conditions,
            noise_salt,
            compressions,
            jobs,
        )


def _profile_samples(
    model: MultiExitModel,
    images: np.ndarray,
    shapes: list,
    log,
    label: str = "",
    compressions: tuple[str, ...] = COMPRESSIONS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """confidence, entropy, prediction (N, S+1, C, E) and payload bytes (S+1, C) of uint8
    ``images``, each sample run alone through the code live execution uses."""
    from splitexit.dnn_profiles.model import (
        decode_payload,
        encode_payload,
        max_softmax,
        normalised_entropy,
    )

    s_max, blocks = model.num_blocks, model.exit_blocks
    n, c, e = len(images), len(compressions), len(blocks)
    conf = np.zeros((n, s_max + 1, c, e), np.float32)
    ent = np.zeros((n, s_max + 1, c, e), np.float32)
    pred = np.zeros((n, s_max + 1, c, e), np.int8)
    payload_bytes = np.zeros((s_max + 1, c), np.int64)
    payload_bytes[0, :] = model.raw_input_bytes
    start = time.perf_counter()

    def record(i: int, splits: slice, ci: slice | int, block: int, logits: torch.Tensor) -> None:
        k = blocks.index(block)
        conf[i, splits, ci, k], pred[i, splits, ci, k] = max_softmax(logits)
        ent[i, splits, ci, k] = float(normalised_entropy(logits)[0])

    for i in range(n):
        # The device side: the plain model, all exits, features after every block.
        x = model.images_to_input(images[i][None])
        features, plain_logits = [], {}
        for b in range(1, s_max + 1):
            x, logits = model.run_blocks(x, b - 1, b)
            features.append(x)
            plain_logits.update(logits)
        # Every split sees the plain model first. At split 0 the raw uint8 image is sent
        # whatever the compression, and a float32 payload round-trips exactly: both see the
        # plain model's exits. The float16 and int8 payloads of splits 1..S-1 run the tail.
        for blk, lg in plain_logits.items():
            record(i, slice(None), slice(None), blk, lg)
        for split in range(1, s_max):
            for ci, comp in enumerate(compressions):
                payload = encode_payload(features[split - 1], comp)
                payload_bytes[split, ci] = len(payload)
                if comp == "float32":
                    continue
                x_in = decode_payload(payload, comp, (1, *shapes[split - 1]))
                for blk, lg in model.run_blocks(x_in, split, s_max)[1].items():
                    record(i, slice(split, split + 1), ci, blk, lg)
        if log and (i + 1) % 1000 == 0:
            log(f"profiled {label}{i + 1}/{n} samples ({time.perf_counter() - start:.0f} s)")
    return conf, ent, pred, payload_bytes


def _worker_profile_samples(args: tuple) -> tuple:
    """One chunk of :func:`_profile_samples` in a worker process (one torch thread)."""
    import torch

    from splitexit.dnn_profiles import zoo

    torch.set_num_threads(WORKER_THREADS)
    model_name, state, images, shapes, compressions = args
    model = zoo.get_model(model_name).build()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return _profile_samples(model.eval(), images, shapes, None, "", compressions)


def _profile_all(
    model: MultiExitModel, images: np.ndarray, shapes: list, log, label: str, compressions, jobs
):
    """:func:`_profile_samples` over ``images``, in ``jobs`` worker processes when > 1."""
    if jobs <= 1:
        return _profile_samples(model, images, shapes, log, label, compressions)
    import multiprocessing

    state = {k: v.clone() for k, v in model.state_dict().items()}
    chunks = np.array_split(np.arange(len(images)), jobs)
    work = [(model.name, state, images[c], shapes, compressions) for c in chunks]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        parts = pool.map(_worker_profile_samples, work)
    if log:
        log(f"profiled {label}{len(images)} samples in {jobs} processes")
    conf, ent, pred = (np.concatenate([p[j] for p in parts]) for j in range(3))
    return conf, ent, pred, parts[0][3]


def _profile(
    model: MultiExitModel,
    dataset: Dataset,
    weights_sha256: str,
    latency_repeats: int,
    log,
    conditions: tuple[Condition, ...] | None,
    noise_salt: int,
    compressions: tuple[str, ...],
    jobs: int,
) -> Profile:
    import torch

    model.eval()
    spec = corruption_set(model.dataset)
    s_max, blocks = model.num_blocks, model.exit_blocks
    n = len(dataset)
    measured = measure_blocks(model, dataset.images[0], latency_repeats)
    shapes = measured["block_output_shapes"]
    start = time.perf_counter()
    by_condition = None
    if conditions is None:
        conf, ent, pred, payload_bytes = _profile_all(
            model, dataset.images, shapes, log, "", compressions, jobs
        )
    else:
        index = np.arange(n)
        runs, stats = [], []
        for cond in conditions:
            images = apply_condition(dataset.images, cond, index, noise_salt, spec)
            runs.append(
                _profile_all(model, images, shapes, log, f"{cond.name}: ", compressions, jobs)
            )
            stats.append(image_stats(images, spec))
        payload_bytes = runs[0][3]
        by_condition = {name: np.stack([r[j] for r in runs]) for j, name in enumerate(_PER_SAMPLE)}
        by_condition["image_stats"] = np.stack(stats)
        conf, ent, pred = (by_condition[name][0] for name in _PER_SAMPLE)
    meta = {
        "schema_version": SCHEMA_VERSION if conditions is None else CONDITIONS_SCHEMA_VERSION,
        "model": model.name,
        "weights_sha256": weights_sha256,
        "dataset": dataset.name,
        "num_samples": n,
        "num_blocks": s_max,
        "exit_blocks": list(blocks),
        "compressions": list(compressions),
        "raw_input_bytes": model.raw_input_bytes,
        "block_output_shapes": shapes,
        "host": host_description(),
        # the thread count the samples ran at (live execution runs at it: Profile.torch_threads)
        "torch_threads": WORKER_THREADS if jobs > 1 else torch.get_num_threads(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile_time_s": round(time.perf_counter() - start, 1),
        "sources": {
            "flops": "torch.utils.flop_counter.FlopCounterMode (conv and matmul; BN, ReLU and "
            "pooling not counted)",
            "latency": f"median of {latency_repeats} runs at batch 1 on the host above",
            "int8": "symmetric per-tensor int8 with a float32 scale (Jacob et al., CVPR 2018)",
            "confidence": "max softmax (SDN, Kaya et al., ICML 2019); normalised entropy "
            "(BranchyNet, Teerapittayanon et al., ICPR 2016)",
        },
    }
    if conditions is not None:
        meta["conditions"] = [c.describe() for c in conditions]
        meta["corruption_noise"] = {
            "salt": noise_salt,
            "seed": "np.random.default_rng([salt, corruption id, severity, sample index])",
            "corruption_ids": {c: i for c, i in CORRUPTION_IDS.items()},
            "code": "splitexit.dnn_profiles.corruptions.apply_condition",
        }
        meta["image_stats_names"] = list(IMAGE_STATS_NAMES)
        meta["image_stats_flops"] = image_stats_flops(spec)
        meta["sources"]["corruptions"] = dict(spec.sources)
    return Profile(
        meta=meta,
        payload_bytes=payload_bytes,
        labels=dataset.labels.astype(np.int64),
        confidence=conf,
        entropy=ent,
        prediction=pred,
        by_condition=by_condition,
        **measured["arrays"],
    )
