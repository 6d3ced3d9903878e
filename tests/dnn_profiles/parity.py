"""Replay/live parity, shared by the tests of every shipped profile under conditions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from splitexit.dnn_profiles.corruptions import Condition, apply_condition, image_stats
from splitexit.dnn_profiles.model import MultiExitModel, split_inference
from splitexit.dnn_profiles.profile import Profile

# How far a confidence computed on another CPU may be from the profile's (float32 rounding of
# torch's CPU-specific convolution kernels, seen: 6e-7 relative); answers, exits and bytes must
# agree exactly.
CROSS_CPU_RTOL = 1e-5


def replay_live_mismatches(
    prof: Profile,
    model: MultiExitModel,
    images: np.ndarray,
    conditions: Sequence[Condition],
    thresholds: np.ndarray,
    num_samples: int,
) -> list[tuple]:
    """Live mode corrupts the frame of sample i under each condition and runs it: the profile
    must hold the same image statistics, and the same exit, prediction, confidence and bytes at
    a random split and compression and every threshold, for ``num_samples`` random samples.
    Returns the mismatches (condition, sample, split, compression, threshold, replay, live)."""
    rng = np.random.default_rng(0)
    samples = rng.choice(prof.num_samples, num_samples, replace=False)
    mismatches = []
    for k, cond in enumerate(conditions):
        view = prof.at_condition(k)
        answers = view.answers(thresholds)
        for i in samples:
            frame = apply_condition(images[i], cond, int(i), dataset=model.dataset)
            stats = image_stats(frame, model.dataset)[0]
            assert stats.tobytes() == prof.image_stats[k, i].tobytes()
            split = int(rng.integers(prof.num_blocks + 1))
            ci = int(rng.integers(len(prof.compressions)))
            for t, threshold in enumerate(thresholds):
                live = split_inference(model, frame, split, float(threshold), prof.compressions[ci])
                e = answers[i, split, ci, t]
                sent = view.payload_bytes[split, ci] if view.exit_blocks[e] > split else 0
                replay = (view.exit_blocks[e], int(view.prediction[i, split, ci, e]), int(sent))
                got = (live.exit_block, live.prediction, len(live.payload))
                # (live execution may leave the final exit's confidence uncomputed: None)
                conf = view.confidence[i, split, ci, e]
                same_conf = live.confidence is None or np.isclose(
                    np.float32(live.confidence), conf, rtol=CROSS_CPU_RTOL, atol=0.0
                )
                if replay != got or not same_conf:
                    mismatches.append((cond.name, int(i), split, ci, t, replay, got))
    return mismatches
