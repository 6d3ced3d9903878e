"""The evaluation report: summary.json, per-episode results, report.md and plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from splitexit.agents.evaluate import FIXED_ACTION_POLICIES, adaptation_gap, format_table
from splitexit.files import atomic_write_bytes, atomic_write_text

REPORT_FILE = "report.md"
EPISODE_FIELDS = (
    "policy",
    "seed",
    "steps",
    "reward",
    "accuracy",
    "latency_mean_s",
    "latency_p95_s",
    "energy_j",
    "deadline_miss_rate",
    "early_exit_rate",
)


def write_results(run_dir: Path, summaries: list[dict], episodes: dict[str, list]) -> None:
    """``summary.json`` (``adaptation_gap``, ``best_fixed_action`` and ``policies``, one entry
    per policy), ``episodes.csv`` and ``episodes.json``."""
    gap, best = adaptation_gap(summaries)
    summary = {"adaptation_gap": gap, "best_fixed_action": best, "policies": summaries}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPISODE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for name, eps in episodes.items():
        for e in eps:
            writer.writerow({"policy": name, **e})
    atomic_write_text(run_dir / "episodes.csv", buf.getvalue())
    slim = {
        name: [{k: v for k, v in e.items() if k != "latencies_s"} for e in eps]
        for name, eps in episodes.items()
    }
    atomic_write_text(run_dir / "episodes.json", json.dumps(slim) + "\n")


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def pareto_plot(summaries: list[dict], path: Path) -> None:
    """Accuracy against mean latency, energy per request as colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Policies that mostly fail (accuracy below half) would squash the rest: listed, not drawn.
    shown = [s for s in summaries if s["accuracy"] >= 0.5]
    hidden = [s for s in summaries if s["accuracy"] < 0.5]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lat = [s["latency_mean_s"] * 1e3 for s in shown]
    acc = [s["accuracy"] for s in shown]
    energy = [s["energy_j"] * 1e3 for s in shown]
    points = ax.scatter(lat, acc, c=energy, cmap="viridis", s=60, edgecolors="k")
    for s, x, y in zip(shown, lat, acc):
        ax.annotate(s["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    fig.colorbar(points, ax=ax, label="energy per request (mJ)")
    ax.set_xscale("log")
    ax.set_xlabel("mean latency (ms, log scale)")
    ax.set_ylabel("accuracy")
    title = "Policies: accuracy, latency and energy"
    if hidden:
        title += "\nnot drawn: " + ", ".join(
            f"{s['name']} (accuracy {s['accuracy']:.2f})" for s in hidden
        )
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    _save_figure(fig, path)
    plt.close(fig)


def timeline_plot(timeline: list[dict], num_splits: int, path: Path, title: str) -> None:
    """The agent's split and answering exit per request against the uplink capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [t["step"] for t in timeline]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    ax1.plot(steps, [t["capacity_bps"] / 1e6 for t in timeline], color="0.4", lw=1)
    ax1.set_ylabel("uplink capacity (Mbit/s)")
    ax1.set_title(title)
    ax1.grid(alpha=0.3)
    ax2.step(steps, [t["split"] for t in timeline], where="mid", label="split point", lw=1.2)
    ax2.scatter(steps, [t["exit_block"] for t in timeline], s=8, color="C3", label="exit block")
    ax2.set_yticks(range(num_splits))
    ax2.set_ylabel("block")
    ax2.set_xlabel("request")
    ax2.legend(loc="upper right", fontsize=8)
    ax2.grid(alpha=0.3)
    _save_figure(fig, path)
    plt.close(fig)


def write_report(
    run_dir: Path,
    summaries: list[dict],
    agent_name: str,
    timeline: list[dict] | None,
    num_splits: int,
    context: dict,
) -> None:
    """``report.md`` with the table, the exit mix, the plots and how the run was made; it is
    written last of all the run's files (``--resume`` takes a run with it as finished)."""
    pareto_plot(summaries, run_dir / "pareto.png")
    if timeline:
        timeline_plot(
            timeline, num_splits, run_dir / "timeline.png", f"{agent_name}: first episode"
        )
    exit_rows = "\n".join(
        f"| {s['name']} | " + " | ".join(f"{v:.3f}" for v in s["exit_mix"].values()) + " |"
        for s in summaries
    )
    exit_blocks = list(summaries[0]["exit_mix"])
    deployable = [s for s in summaries if s["deployable"] and s["name"] != agent_name]
    best = max(deployable, key=lambda s: s["mean_reward"]) if deployable else None
    agent = next((s for s in summaries if s["name"] == agent_name), None)
    verdict = ""
    if agent and best:
        apart = agent["mean_reward"] - agent["ci95"] > best["mean_reward"] + best["ci95"]
        overlap = "do not overlap" if apart else "overlap"
        norm = agent.get("oracle_normalized")
        verdict = (
            f"The agent's mean reward is {agent['mean_reward']:.4f} ± {agent['ci95']:.4f}; the "
            f"best deployable baseline, {best['name']}, has {best['mean_reward']:.4f} ± "
            f"{best['ci95']:.4f}: the intervals {overlap}. Oracle-normalised score of the "
            f"agent: {'-' if norm is None else f'{norm:.3f}'}.\n"
        )
    if agent and deployable:
        gap, best_fixed = adaptation_gap(summaries)
        adapt = agent.get("adapt")
        not_beaten = [
            s["name"]
            for s in deployable
            if s.get("agent_minus_policy") is None
            or s["agent_minus_policy"] - s["agent_minus_policy_ci95"] <= 0
        ]
        verdict += (
            f"\nAdaptation gap G = R(channel-oracle) - R(best fixed action: {best_fixed}) = "
            f"{'-' if gap is None else f'{gap:.4f}'}; adapt score of the agent: "
            f"{'-' if adapt is None else f'{adapt:.3f}'}.\n\n"
            "The agent beats every deployable baseline (paired 95% interval above zero): "
            f"{'no' if not_beaten else 'yes'}"
            + (f"; not beaten: {', '.join(not_beaten)}" if not_beaten else "")
            + ".\n"
        )
    text = f"""# splitexit evaluation report: {agent_name}

{context.get("description", "")}

## Policies

Mean over {summaries[0]["episodes"]} evaluation episodes (seeds {context.get("eval_seeds", "")})
on the traces `{context.get("eval_traces", "")}`, not used in training. Latency and energy are
per request; the oracle-normalised score is (R - R_random) / (R_channel_oracle - R_random);
adapt is (R - R_best_fixed) / G with G = R_channel_oracle - R_best_fixed, the best fixed action
being the best of {", ".join(sorted(FIXED_ACTION_POLICIES))} (0: no better than it, 1: the
channel oracle); agent − policy is the mean per-episode difference of the agent's reward and
the policy's, on the same episodes (common random numbers), with its 95% interval.

{format_table(summaries)}
{verdict}
## Exit mix

| policy | {" | ".join(f"block {b}" for b in exit_blocks)} |
|---|{"---|" * len(exit_blocks)}
{exit_rows}

## Plots

![Pareto: accuracy against latency, energy as colour](pareto.png)

![Timeline of the agent's splits and exits against the uplink capacity](timeline.png)

## Run

```
{context.get("command", "")}
```

{json.dumps({k: v for k, v in context.items() if k not in ("command", "description")}, indent=2)}
"""
    atomic_write_text(run_dir / REPORT_FILE, text)  # last: a run with it is finished
