"""Benchmark: how much adaptive control can gain at all, on a data set and model.

    splitexit bench ceiling [--workload fmnist|cifar10] [--episodes 30]
                                       [--train-images 60000] [--quick] [--json PATH]

``--workload fmnist`` (the default) measures the Fashion-MNIST CNN in v0's and the v1 draft's
worlds; ``--workload cifar10`` the split multi-exit ResNet on CIFAR-10 (its corruption-trained
weights, the profile ``cifar10-multiexit-resnet``) in the same worlds on the Cortex-M7 board
(``device="mcu"``, the MLPerf Tiny CIFAR-10 platform, which runs its 11-MFLOP head in 24 ms
but not its 135-MFLOP whole in a 100 ms frame period). For each world it reports the
adaptation gap G = R(channel oracle) - R(best fixed action) and the hindsight gap
R(hindsight oracle) - R(best fixed action).

Three measurements behind issue 12's (and 13's) headroom criterion:

1. **The data set.** A linear classifier (softmax regression on the raw pixels, full-batch
   L-BFGS, trained on the train split read from ``$SPLITEXIT_FASHION_MNIST`` or the Debian
   package's folder, or ``$SPLITEXIT_CIFAR10``; skipped if it is absent) against the shipped
   models' exits on the test split: the cheapest sensible classifier, and how far above it the
   final exit is.
2. **The conditions.** The corruption-trained model's exits under every corruption of
   ``corruptions.CORRUPTION_IDS`` (four of ImageNet-C's or CIFAR-10-C's, a darker scene and
   3DCC's low light) at all five severities: how much the final exit gains over the first one,
   per condition.
3. **The worlds.** On the held-out traces (common random numbers, as ``train_agent.py``):
   random, the best fixed action (BranchyNet's threshold counted: it is one fixed action;
   the best by its reward on these episodes), the channel oracle (knows the capacity, queue,
   condition and demand) and the hindsight oracle (also the sample: per request, the action of
   best reward for that very sample). Both oracles are greedy, request by request (on a
   battery budget they pace it, ``baselines.paced_choice``), so the hindsight oracle bounds
   the channel oracle only as measured, and a policy that plans the battery could in
   principle beat both. Worlds: v0's default, v0 with the uplink capacity
   divided by 4, 8 and 16 (a crude proxy for as many devices uploading at once: constant equal
   shares, no shared server queue), the v1 draft, and the v1 draft mains-powered (no battery
   budget) with LTE, with Wi-Fi, with LTE's tail energy and with the latency-critical reward.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from splitexit import V1_DRAFT
from splitexit.agents.evaluate import (
    EVAL_SEED_BASE,
    FIXED_ACTION_POLICIES,
    adaptation_gap,
    add_oracle_normalized,
    fit_baseline,
    make_env,
    run_episodes,
    summarise,
)
from splitexit.benchmarks.timing import environment, markdown_table, parse_args, write_json
from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.corruptions import (
    CORRUPTION_IDS,
    NUM_SEVERITIES,
    Condition,
    corruption_set,
)
from splitexit.dnn_profiles.data import Dataset
from splitexit.dnn_profiles.train import condition_accuracies, exit_accuracies, load_model

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
# The CIFAR-10 workload: the same worlds with the split ResNet's profile, on the Cortex-M7 board.
CIFAR = {"profile": "cifar10-multiexit-resnet", "weights": "robust", "device": "mcu"}
CIFAR_WORLDS = {
    "v0, mcu": CIFAR,
    "v0, mcu, uplink / 4": {**CIFAR, "capacity_scale": 1 / 4},
    "v0, mcu, uplink / 8": {**CIFAR, "capacity_scale": 1 / 8},
    "v1 draft, mcu": {**V1_DRAFT, **CIFAR},
    "v1 draft, mcu, mains-powered": {**V1_DRAFT, **CIFAR, "battery_j": None},
    "v1 draft, mcu, mains, Wi-Fi": {**V1_DRAFT, **CIFAR, "battery_j": None, "radio": "wifi"},
    "v1 draft, mcu, mains, LTE tail": {
        **V1_DRAFT,
        **CIFAR,
        "battery_j": None,
        "lte_tail": True,
    },
    "v1 draft, mcu, mains, latency-critical": {
        **V1_DRAFT,
        **CIFAR,
        "battery_j": None,
        "reward": "latency-critical",
    },
}
WORKLOADS = {
    "fmnist": {"model": "fmnist-multiexit-cnn", "worlds": WORLDS, "quick": ("v0", "v1 draft")},
    "cifar10": {
        "model": "cifar10-multiexit-resnet",
        "worlds": CIFAR_WORLDS,
        "quick": ("v0, mcu", "v1 draft, mcu"),
    },
}
POLICIES = ("random", *sorted(FIXED_ACTION_POLICIES), "channel-oracle", "hindsight-oracle")


def linear_accuracy(model, test: Dataset, train_images: int) -> float | None:
    """Accuracy on ``test`` of softmax regression on raw pixels (as ``model`` takes them); None
    without the train split.

    The objective is sklearn's ``LogisticRegression`` default (C = 1): the summed cross-entropy
    plus half the squared weights, here divided by the number of images."""
    try:
        train = zoo.get_dataset(model.dataset).load("train")
    except FileNotFoundError:
        return None
    images_to_input = model.images_to_input
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
    the best fixed action (``evaluate.adaptation_gap``), G and the hindsight gap."""
    eval_env = make_env(ENV_ID, **world, traces="mahimahi-up-eval")
    fit_env = make_env(ENV_ID, **world, traces="mahimahi-up-train")
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes)
    rows = []
    for name in POLICIES:
        policy = fit_baseline(name, eval_env, fit_env)
        rows.append(summarise(name, run_episodes(policy, eval_env, seeds), policy.deployable))
    by_name = {r["name"]: r for r in add_oracle_normalized(rows)}
    gap, best = adaptation_gap(rows)
    best_r = by_name[best]["mean_reward"]
    return {
        "policies": by_name,
        "best_static": best,
        "adaptation_gap": gap,
        "hindsight_gap": by_name["hindsight-oracle"]["mean_reward"] - best_r,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="fmnist")
    parser.add_argument("--episodes", type=int, default=30, help="held-out episodes per world")
    parser.add_argument("--train-images", type=int, default=60000, help="linear classifier's")
    args = parse_args(parser, rounds=1)
    if args.quick:
        args.episodes, args.train_images = 1, 2000
    workload = WORKLOADS[args.workload]
    spec = zoo.get_model(workload["model"])
    torch.manual_seed(0)
    start = time.perf_counter()
    test = zoo.get_dataset(spec.dataset).load("test")
    if args.quick:  # a spread of classes (the CIFAR-10 split is sorted by class)
        test = Dataset(test.name, test.images[::20], test.labels[::20])
    with torch.no_grad():
        models = {variant: load_model(path, spec.name) for variant, path in spec.weights.items()}
        exits = {variant: exit_accuracies(m, test) for variant, m in models.items()}
        conditions = tuple(
            Condition(f"{c} {s}", c, s, corruption_set(spec.dataset).sources.get(c, ""))
            for c in CORRUPTION_IDS
            if c != "none"
            for s in range(1, NUM_SEVERITIES + 1)
        )
        per_condition = condition_accuracies(models["robust"], test, conditions)
    linear = linear_accuracy(models["robust"], test, args.train_images)
    worlds = workload["worlds"]
    if args.quick:
        worlds = {k: worlds[k] for k in workload["quick"]}
    measured = {name: headroom(world, args.episodes) for name, world in worlds.items()}
    result = {
        **environment(),
        "workload": args.workload,
        "model": spec.name,
        "episodes": args.episodes,
        "test_images": len(test),
        "linear_accuracy": linear,
        "exit_accuracy": exits,
        "robust_exit_accuracy_per_condition": per_condition,
        "worlds": measured,
        "wall_s": time.perf_counter() - start,
    }

    blocks = "/".join(str(b) for b in models["robust"].exit_blocks)
    print(f"{test.name} ({len(test)} images), accuracy\n")
    rows = [
        [f"{m} model, exits {blocks}", " / ".join(f"{a:.3f}" for a in acc)]
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
    print(markdown_table(["condition", f"exits {blocks}", "final - first"], "llr", rows))

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
                f"{m['adaptation_gap']:.4f}",
                f"{m['hindsight_gap']:.4f}",
            ]
        )
    header = [
        "world", "random", "channel oracle", "best fixed action (norm.)",
        "hindsight oracle (norm.)", "G = oracle - best fixed", "hindsight - best fixed",
    ]  # fmt: skip
    print(markdown_table(header, "lrrllrr", rows))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
