"""Benchmark: how much adaptive control can gain at all, on this data set and model.

    python benchmarks/bench_ceiling.py [--episodes 30] [--train-images 60000] [--quick]
                                       [--json PATH]

Three measurements behind issue 12's (and 13's) headroom criterion:

1. **The data set.** A linear classifier (softmax regression on the raw pixels, full-batch
   L-BFGS, trained on the Fashion-MNIST train split read from ``$SPLITEXIT_FASHION_MNIST`` or the
   Debian package's folder; skipped if it is absent) against the shipped models' exits on the
   test split: the cheapest sensible classifier, and how far above it the final exit is.
2. **The conditions.** The corruption-trained model's exits under every corruption of
   ``corruptions.CORRUPTION_IDS`` (four of ImageNet-C's, a darker scene and 3DCC's low light)
   at all five severities: how much the final exit gains over the first one, per condition.
3. **The worlds.** On the held-out traces (common random numbers, as ``train_agent.py``):
   random, the best fixed action (BranchyNet's threshold counted: it is one fixed action;
   the best by its reward on these episodes), the channel oracle (knows the capacity, queue,
   condition and demand) and the hindsight oracle (also the sample: per request, the action of
   best reward for that very sample). Both oracles are greedy, request by request, so the
   hindsight oracle bounds the channel oracle only as measured, and a policy that plans the
   battery could in principle beat both. Worlds: v0's default, v0 with the uplink capacity
   divided by 4, 8 and 16 (a crude proxy for as many devices uploading at once: constant equal
   shares, no shared server queue), the v1 draft, and the v1 draft mains-powered (no battery
   budget) with LTE, with Wi-Fi, with LTE's tail energy and with the latency-critical reward.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from timing import environment, markdown_table, parse_args, write_json

from splitexit import V1_DRAFT
from splitexit.agents.evaluate import (
    EVAL_SEED_BASE,
    add_oracle_normalized,
    fit_baseline,
    make_env,
    run_episodes,
    summarise,
)
from splitexit.dnn_profiles.corruptions import CORRUPTION_IDS, NUM_SEVERITIES, Condition
from splitexit.dnn_profiles.data import Dataset, load_fashion_mnist
from splitexit.dnn_profiles.model import images_to_input
from splitexit.dnn_profiles.train import (
    ROBUST_WEIGHTS_PATH,
    WEIGHTS_PATH,
    condition_accuracies,
    exit_accuracies,
    load_model,
)

ENV_ID = "splitexit:SplitExit-v0"
WORLDS = {
    "v0": {},
    "v0, uplink / 4": {"capacity_scale": 1 / 4},
    "v0, uplink / 8": {"capacity_scale": 1 / 8},
    "v0, uplink / 16": {"capacity_scale": 1 / 16},
    "v1 draft": V1_DRAFT,
    "v1 draft, mains-powered": {**V1_DRAFT, "battery_j": None},
    "v1 draft, mains, Wi-Fi": {**V1_DRAFT, "battery_j": None, "radio": "wifi"},
    "v1 draft, mains, LTE tail": {**V1_DRAFT, "battery_j": None, "lte_tail": True},
    "v1 draft, mains, latency-critical": {
        **V1_DRAFT,
        "battery_j": None,
        "reward": "latency-critical",
    },
}
STATIC = ("branchynet", "best-static", "local-only", "edge-only")  # one fixed action each
POLICIES = ("random", *STATIC, "channel-oracle", "hindsight-oracle")


def linear_accuracy(test: Dataset, train_images: int) -> float | None:
    """Accuracy on ``test`` of softmax regression on raw pixels; None without the train split.

    The objective is sklearn's ``LogisticRegression`` default (C = 1): the summed cross-entropy
    plus half the squared weights, here divided by the number of images."""
    try:
        train = load_fashion_mnist("train")
    except FileNotFoundError:
        return None
    x = images_to_input(train.images[:train_images]).flatten(1).double()
    y = torch.as_tensor(train.labels[:train_images]).long()
    weight = torch.zeros(x.shape[1], 10, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias], max_iter=2000, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weight + bias, y)
        value = value + 0.5 * weight.pow(2).sum() / len(y)
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        logits = images_to_input(test.images).flatten(1).double() @ weight + bias
    return float((logits.argmax(-1).numpy() == test.labels).mean())


def headroom(world: dict, episodes: int) -> dict:
    """Summary rows of :data:`POLICIES` on the held-out traces (oracle-normalised), by name,
    and the best of :data:`STATIC`."""
    eval_env = make_env(ENV_ID, **world, traces="mahimahi-up-eval")
    fit_env = make_env(ENV_ID, **world, traces="mahimahi-up-train")
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes)
    rows = []
    for name in POLICIES:
        policy = fit_baseline(name, eval_env, fit_env)
        rows.append(summarise(name, run_episodes(policy, eval_env, seeds), policy.deployable))
    by_name = {r["name"]: r for r in add_oracle_normalized(rows)}
    best = max(STATIC, key=lambda n: by_name[n]["mean_reward"])
    return {"policies": by_name, "best_static": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=30, help="held-out episodes per world")
    parser.add_argument("--train-images", type=int, default=60000, help="linear classifier's")
    args = parse_args(parser, rounds=1)
    if args.quick:
        args.episodes, args.train_images = 1, 2000
    torch.manual_seed(0)
    start = time.perf_counter()
    test = load_fashion_mnist("test")
    if args.quick:
        test = test.subset(500)
    with torch.no_grad():
        exits = {
            name: exit_accuracies(load_model(path), test)
            for name, path in (("clean", WEIGHTS_PATH), ("robust", ROBUST_WEIGHTS_PATH))
        }
        conditions = tuple(
            Condition(f"{c} {s}", c, s)
            for c in CORRUPTION_IDS
            if c != "none"
            for s in range(1, NUM_SEVERITIES + 1)
        )
        per_condition = condition_accuracies(load_model(ROBUST_WEIGHTS_PATH), test, conditions)
    linear = linear_accuracy(test, args.train_images)
    worlds = {k: WORLDS[k] for k in ("v0", "v1 draft")} if args.quick else WORLDS
    measured = {name: headroom(world, args.episodes) for name, world in worlds.items()}
    result = {
        **environment(),
        "episodes": args.episodes,
        "test_images": len(test),
        "linear_accuracy": linear,
        "exit_accuracy": exits,
        "robust_exit_accuracy_per_condition": per_condition,
        "worlds": measured,
        "wall_s": time.perf_counter() - start,
    }

    print(f"Fashion-MNIST test ({len(test)} images), accuracy\n")
    rows = [
        [f"{m} model, exits 1/3/4/5", " / ".join(f"{a:.3f}" for a in acc)]
        for m, acc in exits.items()
    ]
    rows.append(
        [
            f"linear classifier on pixels ({args.train_images} train images)",
            "train split not found" if linear is None else f"{linear:.3f}",
        ]
    )
    print(markdown_table(["classifier", "accuracy"], "lr", rows))

    gains = np.array([acc[-1] - acc[0] for acc in per_condition.values()])
    print("\nRobust model, all five severities: final exit's gain over the first, per condition\n")
    rows = [
        [name, " / ".join(f"{a:.3f}" for a in acc), f"{acc[-1] - acc[0]:+.3f}"]
        for name, acc in per_condition.items()
    ]
    rows.append(["mean (max)", "", f"{gains.mean():+.3f} ({gains.max():+.3f})"])
    print(markdown_table(["condition", "exits 1/3/4/5", "final - first"], "llr", rows))

    print(
        f"\nHeld-out traces, {args.episodes} episodes; "
        "normalised = (R - random) / (channel oracle - random)\n"
    )
    rows = []
    for name, m in measured.items():
        p, best = m["policies"], m["best_static"]
        reward = {n: row["mean_reward"] for n, row in p.items()}
        norm = {n: row["oracle_normalized"] for n, row in p.items()}
        rows.append(
            [
                name,
                f"{reward['random']:.4f}",
                f"{reward['channel-oracle']:.4f}",
                f"{best} {reward[best]:.4f} ({norm[best]:.3f})",
                f"{reward['hindsight-oracle']:.4f} ({norm['hindsight-oracle']:.3f})",
                f"{reward['hindsight-oracle'] - reward[best]:.4f}",
            ]
        )
    header = [
        "world", "random", "channel oracle", "best fixed action (norm.)",
        "hindsight oracle (norm.)", "hindsight - best fixed",
    ]  # fmt: skip
    print(markdown_table(header, "lrrlll", rows))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
