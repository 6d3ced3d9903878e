"""The vector env's per-request arithmetic, compiled with numba.

Each function is the scalar code of the single env (``CapacityTrace``, ``OutageSchedule``,
``EdgeServer``, ``RadioModel`` and ``SplitExitEnv._outcome``) in the same floating-point
operations, in the same order, so that :class:`~splitexit.envs.vector.SplitExitVectorEnv`'s
numbers equal :class:`~splitexit.envs.splitexit_env.SplitExitEnv`'s bit for bit
(``tests/envs/test_vector.py``, ``tests/envs/test_kernels.py``). Without ``fastmath`` numba
neither reorders nor fuses floating-point operations. ``_max``/``_min`` are Python's
``max``/``min`` of two numbers (the first unless the second is larger/smaller). What needs
``np.log1p`` stays in numpy (numpy's SIMD ``log1p`` differs from libm's in the last bit).
``_nrt=False``: nothing here allocates, and arrays pass between functions without reference
counting (which made calls several times slower).

The data come as tuples of arrays:

* trace bank ``tr = (cum, cap, off, size, slot_s, duration_s, total_bits)``: trace ``k``'s
  cumulative bits at slot boundaries are ``cum[off[k] : off[k] + size[k] + 1]`` and its slot
  capacities ``cap[off[k] : off[k] + size[k]]``;
* server world ``sw = (arrival_s, work_before_s, g_max, down_start_s, down_end_s, cum_down_s,
  up_at_start_s)`` (:class:`~splitexit.envs.server.ServerWorld` and its outage schedule).
"""

from __future__ import annotations

import math

from numba import njit

from splitexit.envs.energy import BITS_PER_MBIT, MW_PER_W

# outage modes of a server world
NO_OUTAGES, INTERMITTENT, PERMANENT = 0, 1, 2


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


# -- the uplink: CapacityTrace of one trace (cum: cumulative bits at slot boundaries, cap: slot
# capacities), read at base time (episode time + the episode's shift) ---------------------------


@njit(cache=True, _nrt=False)
def cumulative_bits(cum, cap, slot_s, duration_s, total_bits, t_s):
    """``CapacityTrace.cumulative_bits``, and the slot of ``t_s`` in its loop."""
    loops, x = _divmod(t_s, duration_s)
    i = _min(int(x / slot_s), cap.size - 1)
    return loops * total_bits + cum[i] + cap[i] * (x - i * slot_s), i


@njit(cache=True, _nrt=False)
def capacity_at_bps(cap, slot_s, duration_s, t_s):
    """``CapacityTrace.capacity_at_bps`` (``t_s >= 0``)."""
    x = _divmod(t_s, duration_s)[1]  # t_s % duration_s
    return cap[_min(int(x / slot_s), cap.size - 1)]


@njit(cache=True, _nrt=False)
def time_at_bits_s(cum, cap, slot_s, duration_s, total_bits, bits, hint):
    """``CapacityTrace.time_at_bits_s``; ``hint``: a slot to search from."""
    if bits <= 0:
        return 0.0
    if total_bits <= 0:
        return math.inf
    loops = math.ceil(bits / total_bits) - 1
    rest = bits - loops * total_bits
    if rest <= 0:
        loops -= 1
        rest += total_bits
    elif rest > total_bits:
        loops += 1
        rest -= total_bits
    lo = hint + 1 if cum[hint] < rest else 1  # (cum[0] = 0 < rest)
    i = _bisect(cum, lo, cum.size, rest, False) - 1
    return loops * duration_s + i * slot_s + (rest - cum[i]) / cap[i]


# -- the server's outages (OutageSchedule, or with a permanent failure at fail_s the schedule
# ((fail_s,), (inf,))), in server time -------------------------------------------------------


@njit(cache=True, _nrt=False)
def row_mode_of(mode, fail_s):
    """A sub-env's outage mode: a permanent failure that never comes is no outage."""
    return mode if mode != PERMANENT or fail_s < math.inf else NO_OUTAGES


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
    if mode == PERMANENT:
        return t_s if t_s < fail_s else fail_s - 0.0
    if mode == NO_OUTAGES:
        return t_s
    k = _bisect(down_start_s, 0, down_start_s.size, t_s, True) - 1
    if k < 0:
        return t_s
    if t_s < down_end_s[k]:
        return up_at_start_s[k]
    return t_s - cum_down_s[k + 1]


@njit(cache=True, _nrt=False)
def time_at_uptime_s(cum_down_s, up_at_start_s, mode, fail_s, up_s, after_down):
    if mode == PERMANENT:
        past = up_s >= fail_s if after_down else up_s > fail_s
        return up_s + (math.inf if past else 0.0)
    k = _bisect(up_at_start_s, 0, up_at_start_s.size, up_s, after_down)
    return up_s + cum_down_s[k]


# -- episodes and steps ------------------------------------------------------------------------


@njit(cache=True, _nrt=False)
def episode_features(rows, draws, n_samples, samples, tr, trace_k, shift_s, t_obs_s, frame_s,
                     sw, mode, offset_s, fail_s, fail_k, fail_g, heard_s, wait_unit_s, mbps_out,
                     queue_out, down_out):  # fmt: skip
    """What ``SplitExitEnv.reset`` computes of an episode, for sub-envs ``rows`` (row ``q`` of
    the outputs is sub-env ``rows[q]``): the samples of its requests from its ``draws``; the
    throughput (Mbit/s) of each frame between the times ``t_obs_s`` (base time: the
    episode's shift added); at the server's heartbeats ``heard_s`` (episode time) the background
    backlog in units of ``wait_unit_s``, and whether the server is down."""
    cum, cap, off, size, slot_s, duration_s, total_bits = tr
    arrival_s, work_before_s, g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s = sw
    for i in range(samples.shape[0]):  # (request-major: write along rows)
        for r in rows:
            samples[i, r] = _min(int(draws[r, i] * n_samples), n_samples - 1)
    for q in range(rows.size):
        r = rows[q]
        k, shift = trace_k[r], shift_s[r]
        cum_k, cap_k = cum[off[k] : off[k] + size[k] + 1], cap[off[k] : off[k] + size[k]]
        before = 0.0
        for n in range(t_obs_s.size):
            t = t_obs_s[n] + shift
            bits = cumulative_bits(cum_k, cap_k, slot_s[k], duration_s[k], total_bits[k], t)[0]
            if n > 0:  # np.diff(bits) / frame_s / 1e6
                mbps_out[q, n - 1] = (bits - before) / frame_s / 1e6
            before = bits
        offset, fail = offset_s[r], fail_s[r]
        row_mode = row_mode_of(mode, fail)
        j = 0
        for n in range(heard_s.size):
            t = heard_s[n] + offset
            j = _bisect(arrival_s, j, arrival_s.size, t, True)
            up = uptime_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, row_mode, fail, t)
            g = fail_g[r] if j > fail_k[r] else g_max[j]
            queue_out[q, n] = _max(0.0, work_before_s[j] - up + g) / wait_unit_s
            down_out[q, n] = is_down(down_start_s, down_end_s, row_mode, fail, t)


@njit(cache=True, _nrt=False)
def lay_out_observations(rows, log_mbps, log_queue, down, mbps_scale, queue_scale, rtt, deadline,
                         obs):  # fmt: skip
    """``SplitExitEnv.reset``'s observation table for sub-envs ``rows`` (row ``q`` of the
    inputs): ``obs[i, rows[q]]`` for request ``i``, from ``log1p`` of the throughput of the
    frames before it and of the queue at the last heartbeat (numpy's ``log1p``; scaled here as
    ``clip(x / mbps_scale, 0, 1)`` and ``minimum(x / queue_scale, 1)``, with numpy's
    comparisons), and whether the server was down then (overwrites ``log_mbps``)."""
    h = log_mbps.shape[1] - obs.shape[0] + 1
    for q in range(rows.size):
        for n in range(log_mbps.shape[1]):
            x = log_mbps[q, n] / mbps_scale
            x = x if x > 0.0 else 0.0
            log_mbps[q, n] = x if x < 1.0 else 1.0
        r = rows[q]
        for i in range(obs.shape[0]):
            row = obs[i, r]
            for f in range(h):
                row[f] = log_mbps[q, i + f]
            row[h] = rtt
            x = log_queue[q, i] / queue_scale
            row[h + 1] = x if x < 1.0 else 1.0
            row[h + 2] = 0.0 if down[q, i] else 1.0
            row[h + 3] = 0.0  # device backlog (set per step)
            row[h + 4] = 1.0  # battery (set per step)
            row[h + 5] = deadline


@njit(cache=True, _nrt=False)
def observe(obs, step_idx, device_free_s, t0_s, frame_s, wait_unit_s, out, busy, busy_backlog):
    """The current rows of the observation tables; the sub-envs whose device is busy
    (``busy[:count]``, the count returned) and their backlogs in units of ``wait_unit_s``."""
    count = 0
    for r in range(step_idx.size):
        i = step_idx[r]
        for f in range(out.shape[1]):
            out[r, f] = obs[i, r, f]
        backlog_s = device_free_s[r] - (t0_s + i * frame_s)
        if backlog_s > 0.0:
            busy[count] = r
            busy_backlog[count] = backlog_s / wait_unit_s
            count += 1
    return count


@njit(cache=True, _nrt=False)
def step(rows, actions, env, tables, tr, sw, mode, state, out_f, out_i, out_b, sent_s, offloaded):
    """``SplitExitEnv.step`` (replay mode) for sub-envs ``rows`` taking flat ``actions``
    (indexed by sub-env). Advances ``state`` and writes the outputs of sub-env ``r`` to column
    ``r`` of ``out_f`` (latency_s, energy_j, uplink_bps, tx_time_s, device_wait_s,
    server_wait_s, threshold, reward and its parts accuracy, latency, energy, deadline_miss),
    ``out_i`` (split, exit_block, payload_bytes, sample_index) and ``out_b`` (correct,
    deadline_missed, timed_out, terminated, truncated). ``sent_s`` and ``offloaded``: scratch
    arrays of ``num_envs``.

    In four passes over the sub-envs (the device, the uplink, the server, the outcome), each
    short enough for the processor to work on several sub-envs at once: one pass for all
    would be one long chain of dependent divisions, loads and searches per sub-env."""
    (t0_s, frame_s, timeout_s, half_rtt_s, deadline_s, compute_w, alpha_mw, beta_mw,
     tail_on, tail_s, tail_mw, w_acc, w_lat, w_en, w_miss, battery_j, horizon) = env  # fmt: skip
    answer_code, split_of, threshold_of, payload_of, exit_block_of, device_time_s, server_time_s = (
        tables
    )
    cum, cap, off, size, slot_s_k, duration_s_k, total_bits_k = tr
    arrival_bg_s, work_before_s, g_max, down_start_s, down_end_s, cum_down_s, up_at_start_s = sw
    (samples, step_idx, device_free_s, last_tx_end_s, energy_sum_j, trace_k, shift_s, offset_s,
     fail_s, fail_k, fail_g, m_state, ptr_state) = state  # fmt: skip
    n_actions = split_of.size
    latency_s, energy_j, uplink_bps, tx_time_s = out_f[0], out_f[1], out_f[2], out_f[3]
    server_wait_s, payload_bytes, correct, timed_out = out_f[5], out_i[2], out_b[0], out_b[2]

    # 1. The device: the request is dropped, answered on the device, or sent.
    n_off = 0
    for r in rows:
        a = actions[r]
        i = step_idx[r]
        sample = samples[i, r]
        code = answer_code[sample * n_actions + a]
        ti = code >> 1
        split = split_of[a]
        exit_block = exit_block_of[ti]
        arrival = t0_s + i * frame_s
        timeout_at = arrival + timeout_s
        start = _max(arrival, device_free_s[r])
        out_f[4, r] = start - arrival  # device wait
        out_f[6, r] = threshold_of[a]
        out_i[0, r] = split
        out_i[1, r] = exit_block
        out_i[3, r] = sample
        correct[r] = (code & 1) == 1  # the exit's answer, if it comes in time
        if start >= timeout_at:  # dropped: waited for the device until its timeout
            latency_s[r], energy_j[r], timed_out[r] = timeout_s, 0.0, True
            continue
        dev_time = device_time_s[ti]
        energy_j[r] = compute_w * dev_time
        sent = start + dev_time
        if exit_block <= split:  # answered on the device
            done = _min(sent, timeout_at)
            device_free_s[r] = done
            latency_s[r], timed_out[r] = done - arrival, sent > timeout_at
        else:
            sent_s[r] = sent
            offloaded[n_off] = r
            n_off += 1

    # 2. The uplink (CapacityTrace.transfer_time_s at base time sent + shift).
    for q in range(n_off):
        r = offloaded[q]
        a = actions[r]
        sent = sent_s[r]
        timeout_at = t0_s + step_idx[r] * frame_s + timeout_s
        k, shift = trace_k[r], shift_s[r]
        cum_k, cap_k = cum[off[k] : off[k] + size[k] + 1], cap[off[k] : off[k] + size[k]]
        slot, dur, total = slot_s_k[k], duration_s_k[k], total_bits_k[k]
        payload = payload_of[a]
        base_sent = sent + shift
        bits_sent, slot_sent = cumulative_bits(cum_k, cap_k, slot, dur, total, base_sent)
        transfer = 0.0
        if payload > 0:
            bits = bits_sent + 8.0 * payload
            end_s = time_at_bits_s(cum_k, cap_k, slot, dur, total, bits, slot_sent)
            transfer = _max(end_s - base_sent, 0.0)
        uploaded = sent + transfer
        if uploaded <= timeout_at:
            tx_time, bits = uploaded - sent, 8.0 * payload
        else:  # the upload is abandoned at the timeout
            tx_time = _max(timeout_at - sent, 0.0)
            got = cumulative_bits(cum_k, cap_k, slot, dur, total, sent + tx_time + shift)[0]
            bits = _max(got - bits_sent, 0.0)
        energy = energy_j[r]
        mbit = 8.0 * _min(bits / 8, payload) / BITS_PER_MBIT  # RadioModel.tx_energy_j
        energy += (alpha_mw * mbit + beta_mw * tx_time) / MW_PER_W
        if tail_on and tx_time > 0 and last_tx_end_s[r] > -math.inf:
            gap = sent - last_tx_end_s[r]
            if gap > 0:  # RadioModel.tail_energy_j
                energy += _min(gap, tail_s) * tail_mw / MW_PER_W
        energy_j[r] = energy
        if tx_time > 0:
            uplink_bps[r] = bits / tx_time
        else:
            uplink_bps[r] = capacity_at_bps(cap_k, slot, dur, base_sent)
        tx_time_s[r] = tx_time
        payload_bytes[r] = payload
        device_free_s[r] = sent + tx_time
        if tx_time > 0:
            last_tx_end_s[r] = sent + tx_time
        sent_s[r] = uploaded

    # 3. The server (EdgeServer.submit, in server time = episode time + offset).
    for q in range(n_off):
        r = offloaded[q]
        arrival = t0_s + step_idx[r] * frame_s
        timeout_at = arrival + timeout_s
        at_server = sent_s[r] + half_rtt_s
        answer = math.inf
        fail = fail_s[r]
        row_mode = row_mode_of(mode, fail)
        offset = offset_s[r]
        down = is_down(down_start_s, down_end_s, row_mode, fail, at_server + offset)
        if at_server < timeout_at and not down:
            service = server_time_s[
                answer_code[samples[step_idx[r], r] * n_actions + actions[r]] >> 1
            ]
            t = at_server + offset
            ptr = ptr_state[r]
            j = _bisect(arrival_bg_s, ptr, arrival_bg_s.size, t, True)
            m = m_state[r]
            if j > ptr:
                m = _max(m, fail_g[r] if j > fail_k[r] else g_max[j])
            up = uptime_s(down_start_s, down_end_s, cum_down_s, up_at_start_s, row_mode, fail, t)
            backlog = _max(0.0, work_before_s[j] - up + m)
            m_state[r] = _max(m, up - work_before_s[j]) + service
            ptr_state[r] = j
            if row_mode == NO_OUTAGES:
                server_wait_s[r] = backlog
                finish = t + backlog + service - offset
            else:
                up_start = up + backlog
                up_end = up + backlog + service
                start_srv = _max(
                    t, time_at_uptime_s(cum_down_s, up_at_start_s, row_mode, fail, up_start, True)
                )
                finish_srv = _max(
                    start_srv,
                    time_at_uptime_s(cum_down_s, up_at_start_s, row_mode, fail, up_end, False),
                )
                server_wait_s[r], finish = start_srv - t, finish_srv - offset
            answer = finish + half_rtt_s
        timed_out[r] = answer > timeout_at
        latency_s[r] = _min(answer, timeout_at) - arrival

    # 4. The outcome and the reward.
    for r in rows:
        latency, energy = latency_s[r], energy_j[r]
        correct[r] = correct[r] and not timed_out[r]
        missed = timed_out[r] or latency > deadline_s
        r_acc = w_acc * correct[r]
        r_lat = -w_lat * latency
        r_en = -w_en * energy
        r_miss = -w_miss * missed
        energy_sum_j[r] += energy
        step_idx[r] += 1
        terminated = energy_sum_j[r] >= battery_j
        out_f[7, r] = r_acc + r_lat + r_en + r_miss
        out_f[8, r] = r_acc
        out_f[9, r] = r_lat
        out_f[10, r] = r_en
        out_f[11, r] = r_miss
        out_b[1, r] = missed
        out_b[3, r] = terminated
        out_b[4, r] = step_idx[r] >= horizon and not terminated
