"""Plot a run's training curves from its TensorBoard logs, for the results page.

    python docs/_ext/training_curves.py RUN_DIR docs/_static/results/training_curves.png

Reads every event file under ``RUN/tb`` (SB3's ``rollout/ep_rew_mean`` and
``train/entropy_loss``) and draws them against the environment steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

CURVES = (
    ("rollout/ep_rew_mean", "mean episode return"),
    ("train/entropy_loss", "entropy loss"),
)


def plot(run_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = sorted({p.parent for p in (run_dir / "tb").rglob("events.out.tfevents.*")})
    if not logs:
        raise SystemExit(f"training_curves.py: no TensorBoard logs under {run_dir / 'tb'}")
    fig, axes = plt.subplots(1, len(CURVES), figsize=(10, 3.2))
    for log in logs:
        acc = EventAccumulator(str(log))
        acc.Reload()
        for ax, (tag, label) in zip(axes, CURVES):
            if tag in acc.Tags()["scalars"]:
                events = acc.Scalars(tag)
                ax.plot([e.step for e in events], [e.value for e in events], label=log.name)
                ax.set_title(label)
                ax.set_xlabel("environment steps")
    axes[0].legend(fontsize="small")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: training_curves.py RUN_DIR OUT.png")
    plot(Path(sys.argv[1]), Path(sys.argv[2]))
