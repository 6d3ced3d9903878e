"""Benchmark: split execution at batch 1 against the plain forward pass (one run, ratios).

    python benchmarks/bench_split_execution.py [--repeats 300]

For every split point, split execution (head, serialise, deserialise, tail; no early exit)
is timed against the plain forward pass (all blocks, then the final classifier), interleaved
so that both see the same machine state. Also: answering at the first exit against the whole
model. Prints a table and writes JSON to stdout with --json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import COMPRESSIONS, images_to_input, split_inference
from splitexit.dnn_profiles.train import load_model


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = load_model()
    image = load_fashion_mnist("test").images[0]
    final = model.exits[str(model.num_blocks)]

    @torch.no_grad()
    def plain() -> None:
        x = images_to_input(image)
        for block in model.blocks:
            x = block(x)
        final(x).argmax(-1)

    rows = []
    for split in range(model.num_blocks + 1):
        for comp in COMPRESSIONS if 0 < split < model.num_blocks else COMPRESSIONS[:1]:

            def run(split=split, comp=comp):
                return split_inference(model, image, split, 2.0, comp)

            plain(), run()  # warm-up
            t_plain, t_split = [], []
            for _ in range(args.repeats):
                t_plain.append(_time(plain))
                t_split.append(_time(run))
            p, s = statistics.median(t_plain), statistics.median(t_split)
            rows.append(
                {"split": split, "compression": comp, "plain_s": p, "split_s": s, "ratio": s / p}
            )
    t_first, t_whole = [], []
    for _ in range(args.repeats):
        t_first.append(_time(lambda: split_inference(model, image, model.num_blocks, 0.0)))
        t_whole.append(_time(lambda: split_inference(model, image, model.num_blocks, 2.0)))
    exits = {
        "first_exit_s": statistics.median(t_first),
        "whole_model_s": statistics.median(t_whole),
    }
    exits["ratio"] = exits["first_exit_s"] / exits["whole_model_s"]
    result = {
        "torch_threads": torch.get_num_threads(),
        "splits": rows,
        "early_exit": exits,
        "max_ratio": max(r["ratio"] for r in rows),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("split  compression  plain (us)  split (us)  ratio")
    for r in rows:
        print(
            f"{r['split']:5d}  {r['compression']:<11}  {r['plain_s'] * 1e6:10.0f}  "
            f"{r['split_s'] * 1e6:10.0f}  {r['ratio']:.3f}"
        )
    print(f"max ratio {result['max_ratio']:.3f} (goal <= 1.05)")
    print(
        f"first exit {exits['first_exit_s'] * 1e6:.0f} us vs whole model "
        f"{exits['whole_model_s'] * 1e6:.0f} us: ratio {exits['ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
