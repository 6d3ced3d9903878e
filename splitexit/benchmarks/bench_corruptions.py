"""Benchmark: camera conditions, the clean and the corruption-trained model, and their costs.

    splitexit bench corruptions [--samples 10000] [--rounds 200] [--quick] [--json PATH]

For the shipped clean model and the robust one (trained with corruption augmentation), on the
first ``--samples`` test images under every condition of ``corruptions.CONDITIONS`` (the noise
seeded as the profiles seed it): every exit's accuracy and the first exit's mean confidence
(max softmax). Then the per-image cost of each corruption at severity 3 and of the image
statistics, one frame at a time (live mode) and per image of a 1,000-image batch (profiling),
in interleaved rounds (``timing.py``). Prints tables; ``--json PATH`` also writes every figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from splitexit.benchmarks.timing import (
    environment,
    interleaved_rounds,
    markdown_table,
    parse_args,
    timed,
    write_json,
)
from splitexit.dnn_profiles.corruptions import (
    CONDITIONS,
    CORRUPTION_IDS,
    IMAGE_STATS_FLOPS,
    apply_condition,
    corrupt,
    image_stats,
)
from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import images_to_input
from splitexit.dnn_profiles.train import ROBUST_WEIGHTS_PATH, WEIGHTS_PATH, load_model

MODELS = {"clean": WEIGHTS_PATH, "robust": ROBUST_WEIGHTS_PATH}
COST_SEVERITY = 3
BATCH_IMAGES = 1000


@torch.no_grad()
def condition_table(model, images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Per condition: every exit's accuracy and the first exit's mean confidence."""
    rows = []
    index = np.arange(len(images))
    y = torch.as_tensor(labels)
    for cond in CONDITIONS:
        x = images_to_input(apply_condition(images, cond, index))
        logits = [torch.cat(parts) for parts in zip(*(model(b) for b in x.split(1000)))]
        rows.append(
            {
                "condition": cond.name,
                "corruption": cond.corruption,
                "severity": cond.severity,
                "exit_accuracy": [float((lg.argmax(-1) == y).float().mean()) for lg in logits],
                "first_exit_mean_confidence": float(torch.softmax(logits[0], -1).amax(-1).mean()),
            }
        )
    return rows


def cost_table(images: np.ndarray, rounds: int) -> list[dict]:
    """Per corruption (and the image statistics): microseconds per image, alone and batched."""
    frame, batch = images[0], images[:BATCH_IMAGES]
    index = np.arange(len(batch))
    jobs = {
        name: (
            lambda name=name: corrupt(frame, name, COST_SEVERITY, 7),
            lambda name=name: corrupt(batch, name, COST_SEVERITY, index),
        )
        for name in CORRUPTION_IDS
        if name != "none"
    }
    jobs["image_stats"] = (lambda: image_stats(frame), lambda: image_stats(batch))
    single = interleaved_rounds({k: timed(v[0]) for k, v in jobs.items()}, rounds)
    batched = interleaved_rounds({k: timed(v[1]) for k, v in jobs.items()}, max(2, rounds // 20))
    return [
        {
            "operation": name,
            "single_us": statistics.median(single[name]) * 1e6,
            "batched_us_per_image": statistics.median(batched[name]) * 1e6 / len(batch),
        }
        for name in jobs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="test images (10000, quick 500)")
    args = parse_args(parser, rounds=200, quick_rounds=5)
    samples = args.samples or (500 if args.quick else 10000)
    start = time.perf_counter()
    data = load_fashion_mnist("test").subset(samples)
    accuracy = {}
    for name, path in MODELS.items():
        accuracy[name] = condition_table(load_model(path), data.images, data.labels)
    costs = cost_table(data.images, args.rounds)
    result = {
        **environment(),
        "rounds": args.rounds,
        "quick": args.quick,
        "samples": samples,
        "torch_threads": torch.get_num_threads(),
        "accuracy": accuracy,
        "costs": costs,
        "image_stats_flops": IMAGE_STATS_FLOPS,
        "wall_s": time.perf_counter() - start,
    }
    rows = []
    for i, cond in enumerate(CONDITIONS):
        row = [cond.name, f"{cond.corruption} {cond.severity}" if cond.severity else "-"]
        for name in MODELS:
            r = accuracy[name][i]
            row.append(" / ".join(f"{a:.3f}" for a in r["exit_accuracy"]))
            row.append(f"{r['first_exit_mean_confidence']:.3f}")
        rows.append(row)
    header = ["condition", "corruption, severity"]
    for name in MODELS:
        header += [f"{name}: accuracy, exits 1/3/4/5", f"{name}: exit-1 conf"]
    print(f"Exit accuracy per condition, first {samples} test images\n")
    print(markdown_table(header, "llrrrr", rows))
    print(f"\nPer-image cost (corruptions at severity {COST_SEVERITY}; batch of {BATCH_IMAGES})\n")
    cost_rows = [
        [c["operation"], f"{c['single_us']:.1f}", f"{c['batched_us_per_image']:.1f}"] for c in costs
    ]
    print(markdown_table(["operation", "one frame (us)", "batched (us/image)"], "lrr", cost_rows))
    print(f"\nimage statistics: {IMAGE_STATS_FLOPS} operations per frame")
    print(f"{args.rounds} rounds, torch threads {result['torch_threads']}, ", end="")
    print(f"wall time {result['wall_s']:.1f} s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
