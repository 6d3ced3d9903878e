"""Benchmark: split execution at batch 1 against the plain forward pass (one run, ratios).

    splitexit bench split_execution [--rounds 300] [--quick] [--json PATH]

For every split point, split execution (head, serialise, deserialise, tail; no early exit)
is timed against the plain forward pass (all blocks, then the final classifier) in interleaved
rounds (``timing.py``), so that both see the same machine state; the ratio is the median of the
per-round ratios (goal <= 1.05). Also: answering at the first exit against the whole model.
Prints a table; ``--json PATH`` also writes every figure there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from splitexit.benchmarks.timing import (
    environment,
    interleaved_rounds,
    median_ratio,
    parse_args,
    timed,
    write_json,
)
from splitexit.dnn_profiles.data import load_fashion_mnist
from splitexit.dnn_profiles.model import COMPRESSIONS, images_to_input, split_inference
from splitexit.dnn_profiles.train import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = parse_args(parser, rounds=300, quick_rounds=5)
    start = time.perf_counter()
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

            def run(split: int = split, comp: str = comp) -> object:
                return split_inference(model, image, split, 2.0, comp)

            t = interleaved_rounds({"plain": timed(plain), "split": timed(run)}, args.rounds)
            rows.append(
                {
                    "split": split,
                    "compression": comp,
                    "plain_s": statistics.median(t["plain"]),
                    "split_s": statistics.median(t["split"]),
                    "ratio": median_ratio(t["split"], t["plain"]),
                }
            )
    t = interleaved_rounds(
        {
            "first_exit": timed(lambda: split_inference(model, image, model.num_blocks, 0.0)),
            "whole_model": timed(lambda: split_inference(model, image, model.num_blocks, 2.0)),
        },
        args.rounds,
    )
    exits = {
        "first_exit_s": statistics.median(t["first_exit"]),
        "whole_model_s": statistics.median(t["whole_model"]),
        "ratio": median_ratio(t["first_exit"], t["whole_model"]),
    }
    result = {
        **environment(),
        "rounds": args.rounds,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "splits": rows,
        "early_exit": exits,
        "max_ratio": max(r["ratio"] for r in rows),
        "wall_s": time.perf_counter() - start,
    }
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
    print(f"{args.rounds} rounds, torch threads {result['torch_threads']}, ", end="")
    print(f"wall time {result['wall_s']:.1f} s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
