"""``python -m splitexit.dnn_profiles train | profile | show | list``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

from splitexit.dnn_profiles import zoo
from splitexit.dnn_profiles.corruptions import Condition, corruption_set, get_condition
from splitexit.dnn_profiles.profile import COMPRESSIONS, DEFAULT_PROFILE_PATH, Profile
from splitexit.dnn_profiles.profiler import profile
from splitexit.dnn_profiles.train import (
    DEFAULT_MODEL,
    ROBUST_WEIGHTS_PATH,
    WEIGHTS_PATH,
    load_model,
    train,
    weights_sha256,
)

SHOW_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


def summarise(p: Profile, thresholds=SHOW_THRESHOLDS) -> dict:
    """What ``show`` prints, as plain data."""
    correct = p.correct
    all_local = np.s_[:, -1, 0]  # split S (everything on the device), uncompressed
    answers = p.answers(np.asarray(thresholds))[:, -1, 0]  # (N, T)
    rows = []
    for t, thr in enumerate(thresholds):
        exit_idx = answers[:, t]
        right = correct[all_local][np.arange(p.num_samples), exit_idx]
        rate = np.bincount(exit_idx, minlength=len(p.exit_blocks)) / p.num_samples
        rows.append(
            {
                "threshold": thr,
                "accuracy": float(right.mean()),
                "exit_rate": {str(b): float(r) for b, r in zip(p.exit_blocks, rate)},
                "mean_flops": float(
                    np.mean(
                        [
                            p.block_flops[: p.exit_blocks[k]].sum()
                            + (p.exit_flops[: k + 1].sum() if thr <= 1 else p.exit_flops[-1])
                            for k in exit_idx
                        ]
                    )
                ),
            }
        )
    return {
        "model": p.meta["model"],
        "weights_sha256": p.meta.get("weights_sha256", ""),
        "dataset": p.meta["dataset"],
        "num_samples": p.num_samples,
        "host": p.meta.get("host", ""),
        "raw_input_bytes": p.meta["raw_input_bytes"],
        "blocks": [
            {
                "block": b + 1,
                "flops": int(p.block_flops[b]),
                "host_latency_s": float(p.block_latency_s[b]),
                "output_shape": p.meta["block_output_shapes"][b],
            }
            for b in range(p.num_blocks)
        ],
        "splits": [
            {
                "split": s,
                "payload_bytes": {
                    c: int(p.payload_bytes[s, i]) for i, c in enumerate(p.compressions)
                },
            }
            for s in range(p.num_blocks + 1)
        ],
        "exits": [
            {
                "block": b,
                "accuracy": float(correct[all_local][:, k].mean()),
                "accuracy_by_split": {
                    f"{s}/{c}": float(correct[:, s, ci, k].mean())
                    for s in range(b)
                    for ci, c in enumerate(p.compressions)
                },
                "mean_confidence": float(p.confidence[all_local][:, k].mean()),
                "flops": int(p.exit_flops[k]),
                "host_latency_s": float(p.exit_latency_s[k]),
            }
            for k, b in enumerate(p.exit_blocks)
        ],
        "thresholds": rows,
        **(
            {
                "conditions": [
                    {
                        **c,
                        "exit_accuracy": acc.tolist(),
                        "mean_confidence": conf.tolist(),
                    }
                    for c, acc, conf in zip(
                        p.meta["conditions"],
                        p.exit_accuracy_by_condition(),
                        p.confidence_by_condition[:, :, -1, 0, :].mean(1),
                    )
                ]
            }
            if p.num_conditions > 1
            else {}
        ),
    }


def print_table(s: dict) -> None:
    print(f"{s['model']} on {s['dataset']} ({s['num_samples']} samples), host: {s['host']}")
    print(f"weights sha256 {s['weights_sha256'][:16]}..., raw input {s['raw_input_bytes']} bytes\n")
    comps = list(s["splits"][0]["payload_bytes"])
    print(
        "block  MFLOPs  host latency  output shape    payload bytes after it ("
        + "/".join(comps)
        + ")"
    )
    for blk, split in zip(s["blocks"], s["splits"][1:]):
        payload = "/".join(str(v) for v in split["payload_bytes"].values())
        shape = "x".join(map(str, blk["output_shape"]))
        print(
            f"{blk['block']:>5}  {blk['flops'] / 1e6:6.2f}  {blk['host_latency_s'] * 1e6:9.0f} us"
            f"  {shape:<14}  {payload}"
        )
    print(f"split 0 sends the raw input: {s['splits'][0]['payload_bytes'][comps[0]]} bytes\n")
    print(
        "exit block  accuracy  mean conf  MFLOPs  worst accuracy after a split (split/compression)"
    )
    for e in s["exits"]:
        worst = min(
            e["accuracy_by_split"].items(), key=lambda kv: kv[1], default=("-", e["accuracy"])
        )
        print(
            f"{e['block']:>10}  {e['accuracy']:8.4f}  {e['mean_confidence']:9.4f}  "
            f"{e['flops'] / 1e6:6.3f}  {worst[1]:.4f} ({worst[0]})"
        )
    blocks = list(s["thresholds"][0]["exit_rate"])
    print(
        "\nthreshold  accuracy  mean MFLOPs  exit rate at block "
        + " ".join(f"{b:>5}" for b in blocks)
    )
    for r in s["thresholds"]:
        rates = " ".join(f"{v:5.3f}" for v in r["exit_rate"].values())
        mflops = r["mean_flops"] / 1e6
        print(f"{r['threshold']:9.2f}  {r['accuracy']:8.4f}  {mflops:11.2f}  {'':19}{rates}")
    if "conditions" in s:
        print(
            "\ncondition    corruption       sev  accuracy per exit        mean confidence per exit"
        )
        for c in s["conditions"]:
            acc = " ".join(f"{a:.3f}" for a in c["exit_accuracy"])
            conf = " ".join(f"{a:.3f}" for a in c["mean_confidence"])
            print(f"{c['name']:<11}  {c['corruption']:<15}  {c['severity']:3d}  {acc}  {conf}")


def _parse_conditions(
    parser: argparse.ArgumentParser, flag: str, names: str | None, dataset: str
) -> tuple[Condition, ...] | None:
    """The data set's conditions named, comma-separated, by ``flag`` (None if not given)."""
    if not names:
        return None
    try:
        return tuple(get_condition(n, dataset) for n in names.split(","))
    except ValueError as err:
        parser.error(f"{flag}: {err}")


def main(argv: list[str] | None = None, prog: str = "python -m splitexit.dnn_profiles") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train a registered multi-exit model")
    p_train.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(zoo.MODELS),
        help="registered model (its recipe in splitexit.dnn_profiles.zoo.MODELS)",
    )
    p_train.add_argument(
        "--data-dir",
        help="train split: Fashion-MNIST's idx .gz folder, or a CIFAR-10 JPEG tree or "
        "cifar-10-batches-bin folder (default: $SPLITEXIT_FASHION_MNIST / $SPLITEXIT_CIFAR10)",
    )
    p_train.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    p_train.add_argument("--seed", type=int, default=0)
    p_train.add_argument(
        "--out",
        help=f"weights (.safetensors); default the model's shipped file ({WEIGHTS_PATH.name}, "
        f"or {ROBUST_WEIGHTS_PATH.name} with --corruption-share)",
    )
    p_train.add_argument(
        "--corruption-share",
        type=float,
        default=None,
        help="corruption augmentation: the share of training images put under a camera "
        "condition (0 = off, plain training; default: the model's recipe)",
    )
    p_train.add_argument(
        "--corruption-conditions",
        help="comma-separated condition names (default: all of the data set's but clean)",
    )
    p_train.add_argument("--lr", type=float, help="one-cycle peak (default: the model's recipe)")
    p_train.add_argument("--pct-start", type=float, default=0.3, help="one-cycle warm-up share")
    p_train.add_argument(
        "--init-from", help="start from these weights (a fine-tuning stage after the first)"
    )
    p_train.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast of the forward pass (default: the model's recipe; fast only on "
        "CPUs with bf16 instructions, AVX512-BF16 or AMX: emulated, 13x slower, on AVX2)",
    )
    p_prof = sub.add_parser("profile", help="profile a trained model on the test split")
    p_prof.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(zoo.MODELS),
        help="registered model the weights are of",
    )
    p_prof.add_argument("--weights", help="weights (.safetensors); default the model's shipped")
    p_prof.add_argument("--data-dir", help="test split folder (default: the shipped one)")
    p_prof.add_argument("--num-samples", type=int, default=None, help="first N test samples")
    p_prof.add_argument(
        "--conditions",
        help="record every sample under camera conditions: 'all' (the data set's conditions) "
        "or comma-separated names, the first 'clean' (default: none, a v0 profile)",
    )
    p_prof.add_argument(
        "--compressions",
        default=",".join(COMPRESSIONS),
        help="comma-separated payload formats to record (default: all)",
    )
    p_prof.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    p_prof.add_argument("--out", default=str(DEFAULT_PROFILE_PATH), help="profile (.json)")
    p_show = sub.add_parser("show", help="print a profile as a table")
    p_show.add_argument(
        "profile",
        nargs="?",
        default=str(DEFAULT_PROFILE_PATH),
        help="a registered profile's name (see list) or a profile .json",
    )
    p_show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list = sub.add_parser("list", help="list the registered profiles")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.command == "train":
        spec = zoo.get_model(args.model)
        recipe = dict(spec.train_defaults)
        if args.epochs is not None:
            recipe["epochs"] = args.epochs
        if args.corruption_share is not None:
            recipe["corruption_share"] = args.corruption_share
        if args.lr is not None:
            recipe["lr"] = args.lr
        if args.bf16 is not None:
            recipe["bf16"] = args.bf16
        share = recipe.pop("corruption_share", 0.0)
        conditions = _parse_conditions(
            parser, "--corruption-conditions", args.corruption_conditions, spec.dataset
        )
        if args.out is None:
            variant = "robust" if share > 0 else "clean"
            if variant not in spec.weights:
                parser.error(f"--out: {args.model} ships no {variant} weights; give a path")
            args.out = str(spec.weights[variant])
        dataset = zoo.get_dataset(spec.dataset)
        try:
            train_data = dataset.load("train", args.data_dir)
        except (FileNotFoundError, ValueError) as err:
            parser.error(f"--data-dir: {err}")
        record = train(
            train_data,
            dataset.load("test"),
            seed=args.seed,
            out_path=args.out,
            corruption_share=share,
            corruption_conditions=conditions,
            command=shlex.join(["python", "-m", "splitexit.dnn_profiles", *(argv or sys.argv[1:])]),
            model=args.model,
            eval_every=1 if args.model == DEFAULT_MODEL else 5,
            init_from=args.init_from,
            pct_start=args.pct_start,
            **recipe,
        )
        print(json.dumps(record, indent=2))
    elif args.command == "profile":
        spec = zoo.get_model(args.model)
        weights = args.weights
        if weights is None:
            weights = str(next(iter(spec.weights.values())))
        data = zoo.get_dataset(spec.dataset).load("test", args.data_dir)
        if args.num_samples is not None:
            data = data.subset(args.num_samples)
        if args.conditions == "all":
            conditions = corruption_set(spec.dataset).conditions
        else:
            conditions = _parse_conditions(parser, "--conditions", args.conditions, spec.dataset)
        compressions = tuple(args.compressions.split(","))
        if not set(compressions) <= set(COMPRESSIONS):
            parser.error(f"--compressions: each must be one of {list(COMPRESSIONS)}")
        prof = profile(
            load_model(weights, args.model),
            data,
            weights_sha256(weights),
            log=print,
            conditions=conditions,
            compressions=compressions,
            jobs=args.jobs,
        )
        if conditions is not None or args.model != DEFAULT_MODEL:
            prof.meta["command"] = shlex.join(
                ["python", "-m", "splitexit.dnn_profiles", *(argv or sys.argv[1:])]
            )
        prof.save(args.out)
        print(f"wrote {args.out}")
    elif args.command == "list":
        rows = [
            {
                "name": p.name,
                "model": p.model,
                "dataset": zoo.get_model(p.model).dataset,
                "variant": p.variant,
                "path": str(p.path),
                "available": p.path.is_file(),
            }
            for p in zoo.PROFILES.values()
        ]
        if args.json:
            json.dump(rows, sys.stdout, indent=2)
            print()
        else:
            for r in rows:
                flag = "" if r["available"] else "  (not shipped)"
                print(f"{r['name']:<30} {r['model']:<26} {r['dataset']:<14} {r['variant']}{flag}")
    else:
        path = args.profile
        if path in zoo.PROFILES:
            path = zoo.PROFILES[path].path
        summary = summarise(Profile.load(path))
        if args.json:
            json.dump(summary, sys.stdout, indent=2)
            print()
        else:
            print_table(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
