"""The compiled core: a request's path through the world, written once (numba).

Every view of the world runs these functions over the same named state: the single env
(:class:`~splitexit.envs.splitexit_env.SplitExitEnv`) is one row of it, the vector env
(:class:`~splitexit.envs.vector.SplitExitVectorEnv`) ``N`` rows. The oracles
(``expected_rewards``) run the same phases on a copy of a row, so nothing is committed.

Data (numpy structured arrays, named fields, read in place by the compiled code):

* the world's tables (:class:`World`, built once per config by ``splitexit.envs.world``):
  ``params`` (one :data:`PARAMS` record of constants), ``actions`` (:data:`ACTION` per flat
  action, :func:`flat_action`), ``answers`` (:data:`ANSWER` per :func:`answer_index`: where
  it answers and how long the device and the server compute), ``answer_code`` (per sample
  and flat action, :func:`pack_answer`), the uplink's trace bank (:data:`TRACE` per
  trace over the flat ``cum_bits`` and ``capacity_bps``), the server's background jobs and its
  outage schedule;
* the state: one :data:`CELL` record per world (the uplink trace and the edge server's queue
  and outages, shared by the world's devices) and one :data:`DEVICE` record per device (its
  request counter, busy time, radio and energy), with ``devices.world`` naming its world;
  per device, the samples of its episode and its observation tables;
* each step's outputs: one :data:`OUTPUT` record per device (the info keys, the reward and its
  parts, the episode flags).

Several devices in one world: the devices of a world share its :data:`CELL` row (one trace
read at one offset, one server queue); today's envs have one device per world (``M = 1``,
device ``r`` in world ``r``). What a multi-device view still has to add: :func:`start_episodes`
starts a world together with each device (it must start the cell once and the devices each),
and :func:`step` runs its phases in row order (it must feed the devices' requests to the
server in arrival order, each reading and advancing its world's row).

Floating point: no ``fastmath``, so numba neither reorders nor fuses operations; ``_max`` and
``_min`` are Python's ``max``/``min`` of two numbers and ``_divmod`` is CPython's
``float_divmod``, so the numbers equal the plain-Python reference model in ``tests/`` bit for
bit. ``log1p`` stays in numpy (the env applies it to the values written here): numpy's SIMD
``log1p`` differs from libm's in the last bit. ``_nrt=False``: nothing here allocates.
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import NamedTuple

import numba
import numpy as np
from numba import njit

from splitexit.envs.energy import tail_energy_j, tx_energy_j
from splitexit.envs.observation import (
    OBS_BATTERY,
    OBS_DEADLINE,
    OBS_DEVICE_BACKLOG,
    OBS_LAST_CONFIDENCE,
    OBS_LAST_EXIT,
    OBS_REQUESTS_LEFT,
    OBS_RTT,
    OBS_SERVER_QUEUE,
    OBS_SERVER_REACHABLE,
    OBS_STATS,
    OBS_VALUE,
)

# The uniforms drawn per episode, after one per request (``Batch.draws``): the trace, the slot
# to read it from, the offset into the server's world, the time to a permanent failure.
DRAW_TRACE, DRAW_SLOT, DRAW_OFFSET, DRAW_FAILURE = range(4)
EPISODE_DRAWS = 4

# Entries of inf after the background jobs' arrivals (World.job_arrival_s), so that
# _advance_block can compare a block of arrivals without bounds checks.
ARRIVAL_SENTINELS = 16

# Outage modes (PARAMS.outage_mode, CELL.outage_mode).
NO_OUTAGES, INTERMITTENT, PERMANENT = 0, 1, 2


PARAMS = np.dtype(
    [
        ("t0_s", np.float64),  # the first request's arrival (after the throughput history)
        ("frame_s", np.float64),
        ("timeout_s", np.float64),
        ("half_rtt_s", np.float64),
        ("deadline_s", np.float64),
        ("compute_above_idle_w", np.float64),
        ("alpha_up_mw_per_mbps", np.float64),
        ("beta_mw", np.float64),
        ("tail_enabled", np.bool_),
        ("tail_s", np.float64),
        ("tail_power_mw", np.float64),
        ("w_accuracy", np.float64),
        ("w_latency", np.float64),
        ("w_energy", np.float64),
        ("w_deadline_miss", np.float64),
        ("battery_j", np.float64),  # inf without a battery
        ("horizon", np.int64),
        ("history", np.int64),
        ("n_samples", np.int64),
        ("n_actions", np.int64),
        ("n_exits", np.int64),
        ("outage_mode", np.int64),
        ("spare_s", np.float64),  # server world length - episode duration
        ("duration_s", np.float64),  # the longest time an episode reaches
        ("shift_traces", np.bool_),  # episodes read the trace from a random slot
        ("wait_unit_s", np.float64),
        ("obs_rtt", np.float64),
        ("obs_deadline", np.float64),
        ("battery_drop", np.bool_),  # a spent battery drops the requests (else: terminated)
        ("context_obs", np.bool_),  # the observation has the context features
    ],
    align=True,
)
# Each episode draws, per request, after :data:`EPISODE_DRAWS`: whether the camera's regime
# changes and to what, whether the application's phase changes and to what, the request's
# demand class (:func:`start_contexts`).
CONTEXT_DRAWS = 5
# The constants as the compiled phases read them: values in registers, not loads from the
# params record (which the compiler cannot keep across the stores to the state).
Constants = namedtuple("Constants", PARAMS.names)


ACTION = np.dtype(
    [
        ("split", np.int64),
        ("threshold_idx", np.int64),
        ("compression_idx", np.int64),
        ("threshold", np.float64),
        ("payload_bytes", np.int64),
    ],
    align=True,
)
ANSWER = np.dtype(
    [("exit_block", np.int64), ("device_time_s", np.float64), ("server_time_s", np.float64)],
    align=True,
)
DEMAND = np.dtype(
    [
        ("deadline_s", np.float64),
        ("value", np.float64),  # what a correct answer is worth (x the accuracy weight)
        ("obs_deadline", np.float64),  # the deadline feature
        ("obs_value", np.float64),  # the value feature
    ],
    align=True,
)
TRACE = np.dtype(
    [
        ("offset", np.int64),  # trace k: cum_bits[offset : offset + size + 1], capacity ...size
        ("size", np.int64),
        ("slot_s", np.float64),
        ("duration_s", np.float64),
        ("total_bits", np.float64),
    ],
    align=True,
)
CELL = np.dtype(
    [
        ("trace", np.int64),
        ("shift_s", np.float64),  # episode time t reads the trace at t + shift_s
        ("offset_s", np.float64),  # episode time t is server time t + offset_s
        ("outage_mode", np.int64),  # a permanent failure that never comes is no outage
        ("fail_s", np.float64),  # permanent failure (server time), inf if none
        ("fail_k", np.int64),  # the first background job at or after it
        ("fail_g", np.float64),  # the queue's running maximum past it
        ("queue_m", np.float64),  # the queue's state m and job pointer (see server_phase)
        ("queue_ptr", np.int64),
    ],
    align=True,
)
DEVICE = np.dtype(
    [
        ("world", np.int64),  # its CELL row
        ("step", np.int64),  # the current request
        ("free_s", np.float64),  # when the device is done with its previous request
        ("last_tx_end_s", np.float64),
        ("energy_j", np.float64),  # spent this episode
        ("known_confidence", np.float64),  # the latest answer returned: its confidence
        ("known_exit", np.int64),  # and its exit
        ("pending_confidence", np.float64),  # an answer still on its way back
        ("pending_exit", np.int64),
        ("pending_at_s", np.float64),  # when it arrives (inf: none)
    ],
    align=True,
)
# The info keys of a step, in order, then what else a step returns.
INFO_KEYS = (
    "split",
    "threshold",
    "compression",
    "exit_block",
    "correct",
    "latency_s",
    "energy_j",
    "deadline_missed",
    "timed_out",
    "payload_bytes",
    "uplink_bps",
    "tx_time_s",
    "device_wait_s",
    "server_wait_s",
    "sample_index",
)
REWARD_KEYS = ("accuracy", "latency", "energy", "deadline_miss")
# The info keys of the request's context (SplitExit-v1), after INFO_KEYS in the OUTPUT record.
CONTEXT_INFO_KEYS = ("condition", "demand", "deadline_s", "value", "confidence")
OUTPUT = np.dtype(
    [
        ("split", np.int64),
        ("threshold", np.float64),
        ("compression", np.int64),  # index into config["compressions"]
        ("exit_block", np.int64),
        ("correct", np.bool_),
        ("latency_s", np.float64),
        ("energy_j", np.float64),
        ("deadline_missed", np.bool_),
        ("timed_out", np.bool_),
        ("payload_bytes", np.int64),
        ("uplink_bps", np.float64),
        ("tx_time_s", np.float64),
        ("device_wait_s", np.float64),
        ("server_wait_s", np.float64),
        ("sample_index", np.int64),
        ("accuracy", np.float64),  # the reward parts
        ("latency", np.float64),
        ("energy", np.float64),
        ("deadline_miss", np.float64),
        ("reward", np.float64),
        ("terminated", np.bool_),
        ("truncated", np.bool_),
        ("sent_s", np.float64),  # scratch: when the payload leaves the device / reaches the cell
        ("offloaded", np.bool_),  # scratch
        ("answer", np.int64),  # scratch: the answer index (ANSWER row)
        ("condition", np.int64),  # the camera condition of the frame
        ("demand", np.int64),  # the request's demand class
        ("deadline_s", np.float64),  # its deadline
        ("value", np.float64),  # what a correct answer is worth
        ("confidence", np.float64),  # the answering exit's max-softmax confidence
    ],
    align=True,
)
assert OUTPUT.names[: len(INFO_KEYS)] == INFO_KEYS
assert OUTPUT.names[len(INFO_KEYS) : len(INFO_KEYS) + len(REWARD_KEYS)] == REWARD_KEYS


class World(NamedTuple):
    """The tables of one world, in the order the compiled functions take them."""

    params: np.ndarray  # (1,) PARAMS
    actions: np.ndarray  # (A,) ACTION
    answers: np.ndarray  # ((S+1) * E * 2,) ANSWER
    answer_code: np.ndarray  # (N * A,) int16
    traces: np.ndarray  # (K,) TRACE
    cum_bits: np.ndarray  # bits deliverable up to each slot boundary, per trace
    capacity_bps: np.ndarray  # slot capacities, per trace (+ one 0 after each)
    job_arrival_s: np.ndarray  # background jobs (server time), then ARRIVAL_SENTINELS inf
    job_work_before_s: np.ndarray  # work of the jobs before job j
    job_g_max: np.ndarray  # running maximum of U(a_k) - work_before_s[k] over k < j
    down_start_s: np.ndarray  # intermittent outages (server time)
    down_end_s: np.ndarray
    cum_down_s: np.ndarray  # downtime before outage k
    up_at_start_s: np.ndarray  # up time at the start of outage k
    demands: np.ndarray  # (D,) DEMAND: the demand classes (one without demands)
    answer_conf: np.ndarray  # (K * N * A,) float32: the answering exit's confidence
    frame_stats: np.ndarray  # (K * N, F) float32: the frame statistics features


def bind(dispatcher, *args):
    """The compiled ``dispatcher`` for the types of ``args``, to call without numba's type
    dispatch (which costs ~0.1-0.2 us per argument, ~3 us for :func:`step`). The caller must
    pass arguments of exactly these types (dtype, dimensions, layout, writability): numba's
    entry point does not check them (``Batch`` does, or owns the arrays)."""
    return dispatcher.compile(tuple(numba.typeof(a) for a in args))


# -- indices (compiled; from Python too, on numbers or arrays) ----------------------------------


@njit(cache=True)
def flat_action(split, threshold_idx, compression_idx, n_thresholds, n_compressions):
    """The flat action of (split, threshold index, compression index)."""
    return (split * n_thresholds + threshold_idx) * n_compressions + compression_idx


@njit(cache=True)
def answer_index(split, exit_idx, heads, n_exits):
    """The :data:`ANSWER` row of a request split at ``split`` and answered by exit
    ``exit_idx``, with the early-exit heads run (``heads`` 1) or not (0)."""
    return (split * n_exits + exit_idx) * 2 + heads


@njit(cache=True)
def pack_answer(answer, correct):
    """The packed answer of a sample and action (``World.answer_code``): its :data:`ANSWER`
    row and whether the exit is right, as ``2 * answer + correct`` (``code >> 1``,
    ``code & 1``)."""
    return 2 * answer + correct


@njit(cache=True)
def exit_of_answer(answer, n_exits):
    """The exit of an :data:`ANSWER` row (the inverse of :func:`answer_index`)."""
    return (answer // 2) % n_exits


# -- arithmetic ---------------------------------------------------------------------------------


@njit(cache=True, _nrt=False)
def _max(a, b):
    return b if b > a else a


@njit(cache=True, _nrt=False)
def _min(a, b):
    return b if b < a else a


@njit(cache=True, _nrt=False)
def _divmod(t, d):
    """Python's ``divmod`` of floats ``t >= 0``, ``d > 0`` (CPython's ``float_divmod``), without
    the slow ``fmod`` in the first two loops, where it is ``t`` or ``t - d`` exactly."""
    if t < d:
        return 0.0, t
    if t < 2.0 * d:
        return 1.0, t - d  # exact (Sterbenz); CPython's quotient is (t - (t - d)) / d = 1.0
    mod = t % d  # fmod for t >= 0, d > 0 (exact)
    div = (t - mod) / d
    floordiv = math.floor(div)
    if div - floordiv > 0.5:
        floordiv += 1.0
    return floordiv, mod


@njit(cache=True, _nrt=False)
def _bisect(a, lo, hi, x, right):
    """``bisect_left`` (``bisect_right`` with ``right``) of ``a[lo:hi]``, galloping from ``lo``
    (where the answer mostly is, a few entries on), then a binary search."""
    step = 1
    top = hi
    while lo < hi:
        probe = lo + step - 1
        if probe >= hi:
            break
        if a[probe] > x or (not right and a[probe] == x):
            top = probe
            break
        lo = probe + 1
        step *= 2
    while lo < top:
        mid = (lo + top) >> 1
        if a[mid] < x or (right and a[mid] == x):
            lo = mid + 1
        else:
            top = mid
    return lo


@njit(cache=True, _nrt=False)
def _advance(a, lo, x):
    """``bisect_right(a, x, lo)`` of a sorted ``a`` whose answer is mostly a few entries after
    ``lo`` (the background jobs that arrived since a request's last look): a short linear
    scan, then :func:`_bisect`. The same index either way."""
    hi = a.size
    stop = lo + 8 if lo + 8 < hi else hi
    while lo < stop:
        if a[lo] > x:
            return lo
        lo += 1
    return _bisect(a, lo, hi, x, True)


@njit(cache=True, _nrt=False)
def _advance_block(a, lo, x):
    """:func:`_advance` of an ``a`` that ends in :data:`ARRIVAL_SENTINELS` infs: counts the
    entries ``<= x`` a block at a time, without branches (20% faster over an episode's
    heartbeats, 5% slower in a step's server pass, measured)."""
    if not x < math.inf:  # (inf or NaN: never past the sentinels)
        return _bisect(a, lo, a.size - ARRIVAL_SENTINELS, x, True)
    for _ in range(4):
        count = 0
        for k in range(ARRIVAL_SENTINELS):
            count += a[lo + k] <= x
        lo += count
        if count < ARRIVAL_SENTINELS:
            return lo
    return _bisect(a, lo, a.size, x, True)


# -- the uplink: piecewise-constant capacity that loops at its end (cum: bits deliverable up to
# each slot boundary, cap: slot capacities), read at trace time --------------------------------


@njit(cache=True, _nrt=False)
def cumulative_bits(cum, cap, slot_s, duration_s, total_bits, t_s):
    """Bits deliverable in ``[0, t_s]`` (looping), and the slot of ``t_s`` in its loop."""
    loops, x = _divmod(t_s, duration_s)
    i = _min(int(x / slot_s), cap.size - 1)
    return loops * total_bits + cum[i] + cap[i] * (x - i * slot_s), i


@njit(cache=True, _nrt=False)
def capacity_at_bps(cap, slot_s, duration_s, t_s):
    """Instantaneous capacity at ``t_s >= 0`` (bit/s)."""
    x = _divmod(t_s, duration_s)[1]  # t_s % duration_s
    return cap[_min(int(x / slot_s), cap.size - 1)]


@njit(cache=True, _nrt=False)
def time_at_bits_s(cum, cap, slot_s, duration_s, total_bits, bits, hint):
    """Earliest time at which ``cumulative_bits`` reaches ``bits`` (inf if the trace never
    delivers); ``hint``: a slot to search from."""
    if bits <= 0:
        return 0.0
    if total_bits <= 0:
        return math.inf
    loops = math.ceil(bits / total_bits) - 1
    rest = bits - loops * total_bits  # in (0, total] up to rounding
    if rest <= 0:
        loops -= 1
        rest += total_bits
    elif rest > total_bits:
        loops += 1
        rest -= total_bits
    lo = hint + 1 if cum[hint] < rest else 1  # (cum[0] = 0 < rest)
    i = _bisect(cum, lo, cum.size, rest, False) - 1  # cum[i] < rest <= cum[i + 1]: cap[i] > 0
    return loops * duration_s + i * slot_s + (rest - cum[i]) / cap[i]


@njit(cache=True, _nrt=False)
def _trace(traces, cum_bits, capacity_bps, k):
    tr = traces[k]
    cum = cum_bits[tr.offset : tr.offset + tr.size + 1]
    cap = capacity_bps[tr.offset : tr.offset + tr.size]
    return cum, cap, tr.slot_s, tr.duration_s, tr.total_bits


@njit(cache=True, _nrt=False)
def mean_capacity_bps(traces, cum_bits, capacity_bps, k, shift_s, t0_s, t1_s):
    """Bits deliverable in episode times ``[t0_s, t1_s]`` over their span (bit/s): what the
    device measures by saturating the link; the capacity at ``t0_s`` if the span is empty."""
    cum, cap, slot_s, duration_s, total_bits = _trace(traces, cum_bits, capacity_bps, k)
    a, b = t0_s + shift_s, t1_s + shift_s
    if b == a:
        return capacity_at_bps(cap, slot_s, duration_s, a)
    bits_b = cumulative_bits(cum, cap, slot_s, duration_s, total_bits, b)[0]
    return (bits_b - cumulative_bits(cum, cap, slot_s, duration_s, total_bits, a)[0]) / (b - a)


# -- the server's outages, in server time ---------------------------------------------------------


@njit(cache=True, _nrt=False)
def is_down(down_start_s, down_end_s, mode, fail_s, t_s):
    if mode == PERMANENT:
        return t_s >= fail_s
    if mode == INTERMITTENT:
        k = _bisect(down_start_s, 0, down_start_s.size, t_s, True) - 1
        return k >= 0 and t_s < down_end_s[k]
    return False


@njit(cache=True, _nrt=False)
def uptime_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, mode, fail_s, t_s):
    """The server's cumulative up time in ``[0, t_s]`` (flat while down)."""
    if mode == PERMANENT:
        return t_s if t_s < fail_s else fail_s
    if mode == NO_OUTAGES:
        return t_s
    k = _bisect(down_start_s, 0, down_start_s.size, t_s, True) - 1
    if k < 0:
        return t_s
    if t_s < down_end_s[k]:
        return up_at_start_s[k]
    return t_s - cum_down_s[k + 1]


@njit(cache=True, _nrt=False)
def uptimes_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, t_s, out):
    """:func:`uptime_s` of intermittent outages at each of the times ``t_s``."""
    for n in range(t_s.size):
        out[n] = uptime_s(
            down_start_s, down_end_s, cum_down_s, up_at_start_s, INTERMITTENT, 0.0, t_s[n]
        )


@njit(cache=True, _nrt=False)
def time_at_uptime_s(cum_down_s, up_at_start_s, mode, fail_s, up_s, after_down):
    """Wall time at which the up time reaches ``up_s``: the first such moment, or with
    ``after_down`` the last (after an outage starting there; inf if it never ends)."""
    if mode == PERMANENT:
        past = up_s >= fail_s if after_down else up_s > fail_s
        return up_s + (math.inf if past else 0.0)
    k = _bisect(up_at_start_s, 0, up_at_start_s.size, up_s, after_down)
    return up_s + cum_down_s[k]


@njit(cache=True, _nrt=False)
def constants(params):
    """The :data:`PARAMS` record as :class:`Constants`."""
    p = params[0]
    return Constants(
        p.t0_s,
        p.frame_s,
        p.timeout_s,
        p.half_rtt_s,
        p.deadline_s,
        p.compute_above_idle_w,
        p.alpha_up_mw_per_mbps,
        p.beta_mw,
        p.tail_enabled,
        p.tail_s,
        p.tail_power_mw,
        p.w_accuracy,
        p.w_latency,
        p.w_energy,
        p.w_deadline_miss,
        p.battery_j,
        p.horizon,
        p.history,
        p.n_samples,
        p.n_actions,
        p.n_exits,
        p.outage_mode,
        p.spare_s,
        p.duration_s,
        p.shift_traces,
        p.wait_unit_s,
        p.obs_rtt,
        p.obs_deadline,
        p.battery_drop,
        p.context_obs,
    )


# -- a request's path, in phases (each one row; step runs each phase over all rows) --------------


@njit(cache=True, _nrt=False, inline="always")
def device_phase(p, answers, dev, ti, split, out):
    """Blocks ``1..split`` on the device: the request is dropped (it waited for the device until
    its timeout), answered on the device, or sent (``True``; ``out.sent_s`` set)."""
    arrival = p.t0_s + dev.step * p.frame_s
    timeout_at = arrival + p.timeout_s
    start = _max(arrival, dev.free_s)
    out.device_wait_s = start - arrival
    out.tx_time_s = out.server_wait_s = out.uplink_bps = 0.0
    out.payload_bytes = 0
    out.timed_out = False
    if start >= timeout_at or (p.battery_drop and dev.energy_j >= p.battery_j):
        # waited for the device until its timeout, or no energy left to run or send anything
        out.latency_s, out.energy_j, out.timed_out = p.timeout_s, 0.0, True
        return False
    answer = answers[ti]
    out.energy_j = p.compute_above_idle_w * answer.device_time_s
    sent = start + answer.device_time_s
    if answer.exit_block <= split:  # answered on the device
        done = _min(sent, timeout_at)
        dev.free_s = done
        out.latency_s, out.timed_out = done - arrival, sent > timeout_at
        return False
    out.sent_s = sent
    return True


@njit(cache=True, _nrt=False, inline="always")
def uplink_phase(p, traces, cum_bits, capacity_bps, cell, dev, payload, out):
    """The payload over the uplink trace from ``out.sent_s`` (abandoned at the timeout), with
    the radio's energy (Huang et al. 2012: ``alpha_u * Mbit + beta * t``, optionally the LTE
    tail cut short by this transmission); ``out.sent_s`` becomes the upload's end."""
    sent = out.sent_s
    timeout_at = p.t0_s + dev.step * p.frame_s + p.timeout_s
    cum, cap, slot, dur, total = _trace(traces, cum_bits, capacity_bps, cell.trace)
    shift = cell.shift_s
    base_sent = sent + shift
    bits_sent, slot_sent = cumulative_bits(cum, cap, slot, dur, total, base_sent)
    transfer = 0.0
    if payload > 0:
        end_s = time_at_bits_s(cum, cap, slot, dur, total, bits_sent + 8.0 * payload, slot_sent)
        transfer = _max(end_s - base_sent, 0.0)  # inf at zero capacity
    uploaded = sent + transfer
    if uploaded <= timeout_at:
        tx_time, bits = uploaded - sent, 8.0 * payload
    else:  # the upload is abandoned at the timeout
        tx_time = _max(timeout_at - sent, 0.0)
        got = cumulative_bits(cum, cap, slot, dur, total, sent + tx_time + shift)[0]
        bits = _max(got - bits_sent, 0.0)
    energy = out.energy_j
    energy += tx_energy_j(p.alpha_up_mw_per_mbps, p.beta_mw, _min(bits / 8, payload), tx_time)
    if p.tail_enabled and tx_time > 0 and dev.last_tx_end_s > -math.inf:
        gap = sent - dev.last_tx_end_s
        if gap > 0:
            energy += tail_energy_j(p.tail_s, p.tail_power_mw, gap)
    out.energy_j = energy
    out.uplink_bps = bits / tx_time if tx_time > 0 else capacity_at_bps(cap, slot, dur, base_sent)
    out.tx_time_s = tx_time
    out.payload_bytes = payload
    dev.free_s = sent + tx_time
    if tx_time > 0:
        dev.last_tx_end_s = sent + tx_time
    out.sent_s = uploaded


@njit(cache=True, _nrt=False, inline="always")
def server_phase(
    p, job_arrival_s, work_before_s, g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s,
    cell, dev, service_s, out,
):  # fmt: skip
    """The edge server: a FIFO queue among the background jobs, then the answer back; sets the
    latency and whether the request timed out.

    The unfinished work at server time ``t`` (after the background jobs that arrived at or
    before ``t``, ``j`` of them) is ``max(0, S[j] - U(t) + m)``: ``S[j]`` the background work
    that arrived (``work_before_s``), ``U(t)`` the server's cumulative up time (it does no work
    while down; jobs resume where they stopped). A job of ``s`` seconds arriving at ``a``
    updates ``m <- max(m, U(a) - S[j]) + s`` (Lindley's recursion in these coordinates), so a
    run of background jobs is a running maximum, precomputed per job (``g_max``)."""
    arrival = p.t0_s + dev.step * p.frame_s
    timeout_at = arrival + p.timeout_s
    at_server = out.sent_s + p.half_rtt_s
    answer = math.inf
    mode, fail, offset = cell.outage_mode, cell.fail_s, cell.offset_s
    if at_server < timeout_at and not is_down(
        down_start_s, down_end_s, mode, fail, at_server + offset
    ):
        t = at_server + offset
        ptr = cell.queue_ptr
        j = _advance(job_arrival_s, ptr, t)
        m = cell.queue_m
        if j > ptr:
            m = _max(m, cell.fail_g if j > cell.fail_k else g_max[j])
        up = uptime_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, mode, fail, t)
        backlog = _max(0.0, work_before_s[j] - up + m)
        cell.queue_m = _max(m, up - work_before_s[j]) + service_s
        cell.queue_ptr = j
        if mode == NO_OUTAGES:
            out.server_wait_s = backlog
            finish = t + backlog + service_s - offset
        else:
            start = _max(
                t, time_at_uptime_s(cum_down_s, up_at_start_s, mode, fail, up + backlog, True)
            )
            done = time_at_uptime_s(
                cum_down_s, up_at_start_s, mode, fail, up + backlog + service_s, False
            )
            out.server_wait_s, finish = start - t, _max(start, done) - offset
        answer = finish + p.half_rtt_s
    out.timed_out = answer > timeout_at
    out.latency_s = _min(answer, timeout_at) - arrival


@njit(cache=True, _nrt=False)
def _cost(p, latency_s, energy_j, missed):
    """The reward without its accuracy part."""
    return -p.w_latency * latency_s + -p.w_energy * energy_j + -p.w_deadline_miss * missed


@njit(cache=True, _nrt=False, inline="always")
def outcome_phase(p, dev, correct, out):
    """Score the request (its own deadline and value), count its energy, note its answer's
    confidence for when it is back on the device, move to the next request."""
    out.correct = correct and not out.timed_out
    missed = out.timed_out or out.latency_s > out.deadline_s
    out.deadline_missed = missed
    out.accuracy = p.w_accuracy * out.value * out.correct
    out.latency = -p.w_latency * out.latency_s
    out.energy = -p.w_energy * out.energy_j
    out.deadline_miss = -p.w_deadline_miss * missed
    out.reward = out.accuracy + out.latency + out.energy + out.deadline_miss
    dev.energy_j += out.energy_j
    # The answers back on the device by the next request: the newest one known wins.
    arrival = p.t0_s + dev.step * p.frame_s
    next_arrival = arrival + p.frame_s
    if dev.pending_at_s <= next_arrival:
        dev.known_confidence, dev.known_exit = dev.pending_confidence, dev.pending_exit
        dev.pending_at_s = math.inf
    if not out.timed_out:
        exit_idx = exit_of_answer(out.answer, p.n_exits)
        back = arrival + out.latency_s
        if back <= next_arrival:
            dev.known_confidence, dev.known_exit = out.confidence, exit_idx
            dev.pending_at_s = math.inf
        else:
            dev.pending_confidence, dev.pending_exit = out.confidence, exit_idx
            dev.pending_at_s = back
    dev.step += 1
    out.terminated = not p.battery_drop and dev.energy_j >= p.battery_j
    out.truncated = dev.step >= p.horizon and not out.terminated


@njit(cache=True, _nrt=False, inline="always")
def observe(
    params, demands, frame_stats, devices, samples, demand, throughput_obs, queue_obs,
    reachable_obs, obs, busy_rows, busy_waits,
):  # fmt: skip
    """The current observation of every device into ``obs``, from the episode's tables
    (:func:`lay_out_observations`, :func:`start_contexts`), but for the device backlog of the
    busy devices: their rows and backlogs in wait units go to ``busy_rows`` and ``busy_waits``
    (the caller applies numpy's ``log1p``); returns how many there are."""
    p = constants(params)
    h = p.history
    busy = 0
    for r in range(devices.size):
        dev = devices[r]
        i = dev.step
        k = i if i < p.horizon else p.horizon - 1  # (after the last request: the last one's)
        for f in range(h):
            obs[r, f] = throughput_obs[i + f, r]
        obs[r, h + OBS_RTT] = p.obs_rtt
        obs[r, h + OBS_SERVER_QUEUE] = queue_obs[i, r]
        obs[r, h + OBS_SERVER_REACHABLE] = reachable_obs[i, r]
        obs[r, h + OBS_DEVICE_BACKLOG] = 0.0
        battery = 1.0
        if p.battery_j < math.inf:
            battery = _max(1.0 - dev.energy_j / p.battery_j, 0.0)
        obs[r, h + OBS_BATTERY] = battery
        d = demands[demand[k, r]]
        obs[r, h + OBS_DEADLINE] = d.obs_deadline
        if p.context_obs:
            obs[r, h + OBS_REQUESTS_LEFT] = (p.horizon - i) / p.horizon
            obs[r, h + OBS_VALUE] = d.obs_value
            frame = samples[k, r]
            for f in range(frame_stats.shape[1]):
                obs[r, h + OBS_STATS + f] = frame_stats[frame, f]
            obs[r, h + OBS_LAST_CONFIDENCE] = dev.known_confidence
            obs[r, h + OBS_LAST_EXIT] = dev.known_exit / _max(p.n_exits - 1, 1)
        backlog_s = dev.free_s - (p.t0_s + i * p.frame_s)
        if backlog_s > 0.0:
            busy_rows[busy] = r
            busy_waits[busy] = backlog_s / p.wait_unit_s
            busy += 1
    return busy


@njit(cache=True, _nrt=False)
def observe_backlog(obs, feature, busy_rows, log_waits, busy, wait_scale):
    """The device backlog ``feature`` of the ``busy`` devices listed by :func:`observe` from
    numpy's ``log1p`` of their waits: ``minimum(log_waits / wait_scale, 1)``."""
    for q in range(busy):
        x = log_waits[q] / wait_scale
        obs[busy_rows[q], feature] = x if x < 1.0 else 1.0


@njit(cache=True, _nrt=False)
def first_invalid(action, n_actions):
    """The first index of ``action`` outside ``0..n_actions - 1``, or -1."""
    for r in range(action.size):
        if action[r] < 0 or action[r] >= n_actions:
            return r
    return -1


@njit(cache=True, _nrt=False)
def step(
    params, actions, answers, answer_code, traces, cum_bits, capacity_bps, job_arrival_s,
    job_work_before_s, job_g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s,
    demands, answer_conf, frame_stats, cells, devices, samples, demand, throughput_obs,
    queue_obs, reachable_obs, rows, action, live_code, live_conf, out, obs, busy_rows,
    busy_waits,
):  # fmt: skip
    """One request of each device of ``rows`` taking flat ``action[r]``; the outputs to
    ``out[r]`` and every device's next observation to ``obs`` (see :func:`observe`). With
    ``live_code[r] >= 0`` that answer code and ``live_conf[r]`` replace the profile's (live
    mode). ``samples[i, r]`` is the frame of request ``i``: its sample and camera condition
    (``condition * n_samples + sample``); ``demand[i, r]`` its demand class.

    In four passes over the rows (the device, the uplink, the server, the outcome), each short
    enough for the processor to work on several rows at once: one pass for all would be one
    long chain of dependent divisions, loads and searches per row. Returns the number of busy
    devices (:func:`observe`)."""
    p = constants(params)
    for r in rows:
        dev, o, act = devices[r], out[r], actions[action[r]]
        frame = samples[dev.step, r]
        k = frame * p.n_actions + action[r]
        live = live_code[r] >= 0
        code = live_code[r] if live else answer_code[k]
        o.confidence = live_conf[r] if live else answer_conf[k]
        o.split, o.threshold, o.compression = act.split, act.threshold, act.compression_idx
        o.answer = code >> 1
        o.exit_block = answers[o.answer].exit_block
        o.sample_index = frame % p.n_samples
        o.condition = frame // p.n_samples
        cls = demand[dev.step, r]
        o.demand, o.deadline_s, o.value = cls, demands[cls].deadline_s, demands[cls].value
        o.correct = (code & 1) == 1  # the exit's answer, if it comes in time
        o.offloaded = device_phase(p, answers, dev, o.answer, act.split, o)
    for r in rows:
        if out[r].offloaded:
            dev = devices[r]
            uplink_phase(
                p, traces, cum_bits, capacity_bps, cells[dev.world], dev,
                actions[action[r]].payload_bytes, out[r],
            )  # fmt: skip
    for r in rows:
        o = out[r]
        if o.offloaded:
            dev = devices[r]
            server_phase(
                p, job_arrival_s, job_work_before_s, job_g_max, down_start_s, down_end_s,
                cum_down_s, up_at_start_s, cells[dev.world], dev, answers[o.answer].server_time_s,
                o,
            )  # fmt: skip
    for r in rows:
        outcome_phase(p, devices[r], out[r].correct, out[r])
    return observe(
        params, demands, frame_stats, devices, samples, demand, throughput_obs, queue_obs,
        reachable_obs, obs, busy_rows, busy_waits,
    )  # fmt: skip


@njit(cache=True, _nrt=False)
def expected_rewards(
    params, actions, answers, answer_code, traces, cum_bits, capacity_bps, job_arrival_s,
    job_work_before_s, job_g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s,
    demands, answer_conf, frame_stats, cells, devices, samples, demand, r, exit_prob,
    exit_correct_prob, hindsight, scratch_cell, scratch_device, scratch_out, costs, timed_out,
    energy_j, values, energies_j,
):  # fmt: skip
    """The reward (``values``) and the device's energy in J (``energies_j``) of every flat
    action for device ``r``'s current request, given the true state, on copies of its rows
    (nothing is committed). Averaged over what the exits of a sample drawn from the data set
    would say (``exit_prob``, ``exit_correct_prob``: ``(S+1, C, T, E)``); with ``hindsight``
    the current sample's own exits. Scratch: one row of each state, ``costs``, ``timed_out``
    and ``energy_j`` of shape ``(2, E)``."""
    p = constants(params)
    n_e = p.n_exits
    n_t, n_c = exit_prob.shape[2], exit_prob.shape[1]
    n_s = exit_prob.shape[0]
    sample = samples[devices[r].step, r]
    d = demands[demand[devices[r].step, r]]  # the request's own deadline and value
    w_accuracy = p.w_accuracy * d.value
    o = scratch_out[0]
    for s in range(n_s):
        for c in range(n_c):
            payload = actions[flat_action(s, 0, c, n_t, n_c)].payload_bytes
            for heads in range(2):
                for e in range(n_e):
                    scratch_cell[0] = cells[devices[r].world]
                    scratch_device[0] = devices[r]
                    cell, dev = scratch_cell[0], scratch_device[0]
                    ti = answer_index(s, e, heads, n_e)
                    if device_phase(p, answers, dev, ti, s, o):
                        uplink_phase(p, traces, cum_bits, capacity_bps, cell, dev, payload, o)
                        server_phase(
                            p, job_arrival_s, job_work_before_s, job_g_max, down_start_s,
                            down_end_s, cum_down_s, up_at_start_s, cell, dev,
                            answers[ti].server_time_s, o,
                        )  # fmt: skip
                    missed = o.timed_out or o.latency_s > d.deadline_s
                    costs[heads, e] = _cost(p, o.latency_s, o.energy_j, missed)
                    timed_out[heads, e] = o.timed_out
                    energy_j[heads, e] = o.energy_j
            for t in range(n_t):
                heads = 1 if t < n_t - 1 else 0
                a = flat_action(s, t, c, n_t, n_c)
                if hindsight:
                    code = answer_code[sample * p.n_actions + a]
                    e = exit_of_answer(code >> 1, n_e)
                    right = (code & 1) == 1 and not timed_out[heads, e]
                    values[a] = w_accuracy * right + costs[heads, e]
                    energies_j[a] = energy_j[heads, e]
                else:
                    v, v_j = 0.0, 0.0
                    for e in range(n_e):
                        pe = exit_prob[s, c, t, e]
                        if pe > 0:
                            acc = (
                                0.0
                                if timed_out[heads, e]
                                else w_accuracy * exit_correct_prob[s, c, t, e]
                            )
                            v += pe * costs[heads, e] + acc
                            v_j += pe * energy_j[heads, e]
                    values[a] = v
                    energies_j[a] = v_j


# -- episodes -------------------------------------------------------------------------------------


@njit(cache=True, _nrt=False)
def start_episodes(
    params, actions, answers, answer_code, traces, cum_bits, capacity_bps, job_arrival_s,
    job_work_before_s, job_g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s,
    demands, answer_conf, frame_stats, cells, devices, samples, rows, draws, t_fail_s, t_obs_s,
    heard_s, mbps, queue_waits, down,
):  # fmt: skip
    """Start an episode on each device of ``rows`` (and its world) from its uniforms ``draws[r]``
    (``horizon`` for the samples of its requests, then the trace, the slot to read it from, the
    offset into the server's world, the failure) and ``t_fail_s[q]`` (the time to a permanent
    failure, drawn by the caller with numpy's ``log1p``). Writes, for row ``q`` of the outputs,
    the throughput (Mbit/s) of each frame between the times ``t_obs_s``, and at the server's
    heartbeats ``heard_s`` its background backlog in wait units and whether it is down."""
    p = constants(params)
    n = p.horizon
    for i in range(n):  # (request-major: write along rows)
        for r in rows:
            samples[i, r] = _min(int(draws[r, i] * p.n_samples), p.n_samples - 1)
    for q in range(rows.size):
        r = rows[q]
        dev = devices[r]
        cell = cells[dev.world]
        u = draws[r]
        dev.step, dev.free_s, dev.last_tx_end_s, dev.energy_j = 0, 0.0, -math.inf, 0.0
        dev.known_confidence, dev.known_exit, dev.pending_at_s = 0.0, 0, math.inf
        n_traces = traces.size
        k = _min(int(u[n + DRAW_TRACE] * n_traces), n_traces - 1)
        cell.trace, cell.shift_s = k, 0.0
        if p.shift_traces:
            start = _min(int(u[n + DRAW_SLOT] * traces[k].size), traces[k].size - 1)
            cell.shift_s = start * traces[k].slot_s
        offset = u[n + DRAW_OFFSET] * p.spare_s
        cell.offset_s = offset
        cell.fail_s, cell.fail_k, cell.fail_g = math.inf, job_g_max.size, 0.0
        cell.outage_mode = p.outage_mode
        if p.outage_mode == PERMANENT:
            if t_fail_s[q] < p.duration_s:
                fail = offset + t_fail_s[q]
                j = _bisect(job_arrival_s, 0, job_arrival_s.size, fail, False)
                cell.fail_s, cell.fail_k = fail, j
                cell.fail_g = _max(job_g_max[j], fail - job_work_before_s[j])
            else:
                cell.outage_mode = NO_OUTAGES
        ptr = _bisect(job_arrival_s, 0, job_arrival_s.size, offset, True)
        cell.queue_ptr = ptr
        cell.queue_m = cell.fail_g if ptr > cell.fail_k else job_g_max[ptr]
        # What the device will observe: the uplink's throughput per frame and, at the server's
        # heartbeats (the last len(heard_s) frames), its background backlog and whether it is
        # down. One loop for both: more independent work in flight (7% faster, measured).
        cum, cap, slot, dur, total = _trace(traces, cum_bits, capacity_bps, k)
        before, shift = 0.0, cell.shift_s
        j = ptr  # (heartbeats come at or after the offset)
        mode, fail, fail_k, fail_g = cell.outage_mode, cell.fail_s, cell.fail_k, cell.fail_g
        lag = t_obs_s.size - heard_s.size
        for m in range(t_obs_s.size):
            bits = cumulative_bits(cum, cap, slot, dur, total, t_obs_s[m] + shift)[0]
            if m > 0:
                mbps[q, m - 1] = (bits - before) / p.frame_s / 1e6
            before = bits
            if m >= lag:
                b = m - lag
                t = heard_s[b] + offset
                j = _advance_block(job_arrival_s, j, t)
                up = uptime_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, mode, fail, t)
                g = fail_g if j > fail_k else job_g_max[j]
                queue_waits[q, b] = _max(0.0, job_work_before_s[j] - up + g) / p.wait_unit_s
                down[q, b] = is_down(down_start_s, down_end_s, mode, fail, t)


@njit(cache=True, _nrt=False)
def _pick(cum, u):
    """The index that ``u`` in [0, 1) picks from a cumulative distribution ``cum``."""
    for k in range(cum.size - 1):
        if u < cum[k]:
            return k
    return cum.size - 1


@njit(cache=True, _nrt=False)
def start_contexts(
    params, camera_start_cum, camera_jump_cum, camera_stay, phase_start_cum, phase_jump_cum,
    phase_stay, phase_mix_cum, rows, context_draws, samples, demand,
):  # fmt: skip
    """The context of each request of the episodes of ``rows`` (after :func:`start_episodes`),
    from the uniforms ``context_draws[r]`` (:data:`CONTEXT_DRAWS` per request): the camera's
    regime (a condition of the profile) and the application's phase, two Markov chains sampled
    at the requests (the first state from ``*_start_cum``, their stationary shares of time;
    then at each request the state stays with ``*_stay`` and otherwise jumps to another, drawn
    by its row of ``*_jump_cum``), and each request's demand class from its phase's mix
    (``phase_mix_cum[phase]``). Adds the condition to ``samples``
    (``condition * n_samples + sample``) and writes ``demand``."""
    p = constants(params)
    for r in rows:
        u = context_draws[r]
        camera = _pick(camera_start_cum, u[0])
        phase = _pick(phase_start_cum, u[2])
        for i in range(p.horizon):
            b = i * CONTEXT_DRAWS
            if i > 0:
                if u[b] >= camera_stay[camera]:
                    camera = _pick(camera_jump_cum[camera], u[b + 1])
                if u[b + 2] >= phase_stay[phase]:
                    phase = _pick(phase_jump_cum[phase], u[b + 3])
            samples[i, r] += camera * p.n_samples
            demand[i, r] = _pick(phase_mix_cum[phase], u[b + 4])


@njit(cache=True, _nrt=False)
def lay_out_observations(
    rows,
    log_mbps,
    log_queue,
    down,
    mbps_scale,
    queue_scale,
    throughput_obs,
    queue_obs,
    reachable_obs,
):
    """The observation tables of the episodes started by :func:`start_episodes`, from numpy's
    ``log1p`` of their outputs, for row ``q`` of those: ``throughput_obs[m, rows[q]]``, the
    throughput feature of frame ``m`` (a request sees the ``H`` frames before it), and
    ``queue_obs[i, rows[q]]`` and ``reachable_obs[i, rows[q]]``, the server's queue and whether
    it was reachable at request ``i``'s last heartbeat (scaled as ``clip(x / mbps_scale, 0, 1)``
    and ``minimum(x / queue_scale, 1)``, with numpy's comparisons)."""
    for m in range(throughput_obs.shape[0]):  # request-major, as the tables: along rows
        for q in range(rows.size):
            x = log_mbps[q, m] / mbps_scale
            x = x if x > 0.0 else 0.0
            throughput_obs[m, rows[q]] = x if x < 1.0 else 1.0
    for i in range(queue_obs.shape[0]):
        for q in range(rows.size):
            x = log_queue[q, i] / queue_scale
            queue_obs[i, rows[q]] = x if x < 1.0 else 1.0
            reachable_obs[i, rows[q]] = 0.0 if down[q, i] else 1.0
