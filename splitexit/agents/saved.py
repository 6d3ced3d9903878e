"""Agents on disk without pickle: weights in safetensors, and a JSON description beside them.

A saved agent is a folder (a run folder, or one checkpoint) holding::

    agent.safetensors      the policy's weights (tensors only: loading runs no code)
    optimizer.safetensors  checkpoints only: the optimizer's state, to resume training
    agent.json             what the weights are: backend, algorithm, spaces, network,
                           hyperparameters, env id and config, steps, every file's sha256,
                           and the sha256 of its own content (``description_sha256``)

``agent.json`` is written last, so a folder with a readable ``agent.json`` whose hashes match
holds a complete agent; a kill before it leaves no agent (resume then starts from the
checkpoint before). Everything in it is JSON: classes (an activation, an optimizer) are named
and resolved only inside ``torch.nn`` / ``torch.optim`` / SB3, never unpickled.

Files that do hold pickles (an SB3 ``model.zip``, an RLlib checkpoint) run code when loaded:
they are read only on request (``trust_pickle``), except the RLlib checkpoints a run made
itself, which it signs with a key of this machine (:func:`sign_folder`).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from splitexit.files import atomic_write_bytes, atomic_write_text, read_regular_file

FORMAT = "splitexit-agent-v2"  # v1 had no description_sha256
OLDER_FORMATS = ("splitexit-agent-v1",)
DIGEST_KEY = "description_sha256"  # of agent.json's own content: a change to it is detected
DESCRIPTION_FILE = "agent.json"
# Bounds on what is read of an agent's files (the project's agents: 2-4 KB of JSON, < 1 MB of
# tensors; a policy network of 1 GB is far beyond any on this task).
MAX_DESCRIPTION_BYTES = 16 * 2**20
MAX_TENSORS_BYTES = 2**30
MAX_DESCRIPTION_DEPTH = 32  # nesting of agent.json's JSON (a PPO checkpoint's: 13 levels)
WEIGHTS_FILE = "agent.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
SIGNATURE_FILE = "splitexit-signature.json"  # of a folder of pickles this machine wrote
KEY_ENV = "SPLITEXIT_KEY_FILE"  # where the signing key lives (default: ~/.config/splitexit)
# Classes a description may name: the modules of torch and of the SB3 policies.
CLASS_MODULES = ("torch.nn", "torch.optim", "stable_baselines3", "sb3_contrib")


class OlderFormat(ValueError):
    """An agent file of a format this splitexit no longer reads (written by an older one)."""


class PickleRefused(ValueError):
    """A pickle-based file was to be loaded without ``trust_pickle``."""


# -- spaces and classes as JSON ----------------------------------------------------------------


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """``space`` (Box, Discrete or MultiDiscrete) as JSON data."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    raise TypeError(f"cannot describe a {type(space).__name__} space in JSON")


def space_from_json(data: Mapping[str, Any]) -> gym.Space:
    """The space :func:`space_to_json` described."""
    kind = data.get("type")
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        shape = tuple(int(n) for n in data["shape"])
        low = np.asarray(data["low"], dtype=dtype).reshape(shape)
        high = np.asarray(data["high"], dtype=dtype).reshape(shape)
        return gym.spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.asarray(data["nvec"], dtype=np.int64))
    raise ValueError(f"unknown space type {kind!r}")


def to_json(value: Any) -> Any:
    """``value`` as JSON data: spaces and classes described, tuples as lists."""
    if isinstance(value, gym.Space):
        return {"__space__": space_to_json(value)}
    if isinstance(value, type):
        return {"__class__": f"{value.__module__}.{value.__qualname__}"}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot describe {value!r} ({type(value).__name__}) in JSON")


def resolve_class(name: str) -> type:
    """The class named ``module.Class``, from the modules of torch and SB3 only, and only a
    network module or an optimizer (what a policy's constructor takes: an activation, a
    features extractor, an optimizer class)."""
    import torch

    module, _, attr = name.rpartition(".")
    inside = any(module == m or module.startswith(m + ".") for m in CLASS_MODULES)
    if not inside or not attr.isidentifier():
        raise ValueError(f"class {name!r} is not from {', '.join(CLASS_MODULES)}")
    obj = getattr(importlib.import_module(module), attr, None)
    if not isinstance(obj, type) or not issubclass(obj, (torch.nn.Module, torch.optim.Optimizer)):
        raise ValueError(f"{name!r} is not a torch network module or optimizer class")
    return obj


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json` (lists stay lists)."""
    if isinstance(value, dict):
        if set(value) == {"__space__"}:
            return space_from_json(value["__space__"])
        if set(value) == {"__class__"}:
            return resolve_class(value["__class__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


# -- nested state (an optimizer's) as flat tensors plus a JSON layout ---------------------------


def flatten_state(state: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """``state`` (dicts, lists, tensors, scalars) as a JSON layout and the tensors it names.

    Dict keys keep their type (an optimizer's state is keyed by parameter index)."""
    import torch

    if isinstance(state, torch.Tensor):
        return {"__tensor__": prefix}, {prefix: state.detach().cpu().contiguous()}
    if isinstance(state, Mapping):
        items, tensors = [], {}
        for k, v in state.items():
            if not isinstance(k, (int, str)):
                raise TypeError(f"state key {k!r} is neither int nor str")
            layout, found = flatten_state(v, f"{prefix}{k}.")
            items.append([k, layout])
            tensors.update(found)
        return {"__items__": items}, tensors
    if isinstance(state, (list, tuple)):
        pairs = [flatten_state(v, f"{prefix}{i}.") for i, v in enumerate(state)]
        return [p[0] for p in pairs], {k: t for p in pairs for k, t in p[1].items()}
    return to_json(state), {}


def unflatten_state(layout: Any, tensors: Mapping[str, Any]) -> Any:
    """The state :func:`flatten_state` laid out."""
    if isinstance(layout, dict) and set(layout) == {"__tensor__"}:
        return tensors[layout["__tensor__"]]
    if isinstance(layout, dict) and set(layout) == {"__items__"}:
        return {k: unflatten_state(v, tensors) for k, v in layout["__items__"]}
    if isinstance(layout, list):
        return [unflatten_state(v, tensors) for v in layout]
    return from_json(layout)


# -- the agent folder ---------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def description_digest(description: Mapping[str, Any]) -> str:
    """The sha256 of ``description``'s canonical JSON, its own ``description_sha256`` aside."""
    body = {k: v for k, v in description.items() if k != DIGEST_KEY}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def describe(
    run: Any, observation_space: gym.Space, action_space: gym.Space, **fields: Any
) -> dict:
    """The description of an agent trained by ``run`` (a ``RunSpec``) for these spaces:
    the backend's ``fields`` (algorithm, network, steps), then what every backend records."""
    import torch

    import splitexit

    return {
        "backend": run.backend,
        **fields,
        "observation_space": space_to_json(observation_space),
        "action_space": space_to_json(action_space),
        "env_id": run.env_id,
        "env_config": dict(run.env_config),
        "train_traces": run.train_traces,
        "seed": run.seed,
        "hyperparameters": dict(run.hyperparams),
        "splitexit": splitexit.__version__,
        "torch": torch.__version__,
    }


def write_agent(
    folder: Path,
    weights: Mapping[str, Any],
    description: Mapping[str, Any],
    optimizer: Any | None = None,
) -> Path:
    """Write the agent files into ``folder``: the weights (and an optimizer state), then
    ``agent.json`` (the description with the files' hashes), each atomically. Returns the
    path of ``agent.json``."""
    from safetensors.torch import save as safetensors_bytes

    weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    data = safetensors_bytes(weights, metadata={"format": FORMAT})
    atomic_write_bytes(folder / WEIGHTS_FILE, data)
    files = {WEIGHTS_FILE: {"sha256": _sha256(data)}}
    if optimizer is not None:
        layout, tensors = flatten_state(optimizer)
        data = safetensors_bytes(tensors, metadata={"format": FORMAT})
        atomic_write_bytes(folder / OPTIMIZER_FILE, data)
        files[OPTIMIZER_FILE] = {"sha256": _sha256(data), "layout": layout}
    content = {"format": FORMAT, **to_json(dict(description)), "files": files}
    text = json.dumps({**content, DIGEST_KEY: description_digest(content)}, indent=2)
    atomic_write_text(folder / DESCRIPTION_FILE, text + "\n")
    return folder / DESCRIPTION_FILE


def description_path(path: str | Path) -> Path:
    """``agent.json`` of ``path``: a folder holding one, the file itself, or its weights."""
    path = Path(path)
    if path.is_dir():
        return path / DESCRIPTION_FILE
    if path.name == WEIGHTS_FILE:
        return path.with_name(DESCRIPTION_FILE)
    return path


def read_description(path: str | Path) -> dict[str, Any]:
    """The description in ``agent.json`` (``path`` as for :func:`description_path`), checked
    for its format; a ValueError names the file and what is wrong."""
    path = description_path(path)
    try:
        raw = read_regular_file(path, MAX_DESCRIPTION_BYTES, "agent description")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no saved agent ({DESCRIPTION_FILE}) here") from None
    try:
        description = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # (too deep, too long)
        raise ValueError(
            f"{path}: not a JSON agent description ({type(err).__name__}: {err})"
        ) from None
    if _depth(description) > MAX_DESCRIPTION_DEPTH:
        raise ValueError(
            f"{path}: nested deeper than {MAX_DESCRIPTION_DEPTH} levels, not an agent description"
        )
    found = description.get("format") if isinstance(description, dict) else None
    if found in OLDER_FORMATS:
        raise OlderFormat(
            f"{path}: an agent of format {found!r}, written by an older splitexit; this one "
            f"reads {FORMAT!r} (its description hashed): train it again with this version"
        )
    if found != FORMAT:
        raise ValueError(f"{path}: not a splitexit agent description (format {FORMAT!r})")
    if description.get(DIGEST_KEY) != description_digest(description):
        raise ValueError(
            f"{path}: its {DIGEST_KEY} does not match its content (changed since it was written)"
        )
    for key in ("backend", "algo", "num_timesteps", "observation_space", "action_space"):
        if key not in description:
            raise ValueError(f"{path}: the description lacks {key!r}")
    return description


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _read_tensors(folder: Path, name: str, description: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of file ``name`` in ``folder``, checked against the description's hash."""
    from safetensors.torch import load as safetensors_load

    entry = description.get("files", {}).get(name)
    if entry is None:
        raise ValueError(f"{folder / DESCRIPTION_FILE}: lists no {name}")
    path = folder / name
    try:
        data = read_regular_file(path, MAX_TENSORS_BYTES, "agent tensors file")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (listed in {DESCRIPTION_FILE})") from None
    if _sha256(data) != entry.get("sha256"):
        raise ValueError(f"{path}: sha256 differs from {DESCRIPTION_FILE} (changed or cut short)")
    return safetensors_load(data)


def read_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The description and the weights of the agent at ``path``, hashes checked and weights
    finite."""
    path = description_path(path)
    description = read_description(path)
    weights = _read_tensors(path.parent, WEIGHTS_FILE, description)
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise ValueError(
                f"{path.parent / WEIGHTS_FILE}: tensor {name!r} holds NaN or infinite values "
                "(the training diverged): this agent cannot act"
            )
    return description, weights


def read_optimizer(path: str | Path, description: Mapping[str, Any]) -> Any:
    """The optimizer state saved with the agent at ``path`` (a checkpoint)."""
    folder = description_path(path).parent
    tensors = _read_tensors(folder, OPTIMIZER_FILE, description)
    return unflatten_state(description["files"][OPTIMIZER_FILE]["layout"], tensors)


def check_net_arch_fits(
    net_arch: Any,
    observation_space: gym.Space,
    action_space: gym.Space,
    weights: Mapping[str, Any],
) -> None:
    """A ``ValueError`` if ``net_arch`` (layer widths; SB3's may be a dict of them) needs more
    parameters than ``weights`` hold, checked before the network is built (a description of a
    few bytes could otherwise ask for gigabytes): a layer of width ``w`` after one of ``n`` has
    at least ``n * w + w``, and one branch ends in a layer of an output per action value."""
    net_arch = net_arch or []
    branches = list(net_arch.values()) if isinstance(net_arch, dict) else [net_arch]
    held = sum(int(t.numel()) for t in weights.values())
    needed, last = 0, []
    for branch in branches:
        if not isinstance(branch, list | tuple):
            raise ValueError(f"net_arch {net_arch!r}: a list of layer widths, or a dict of them")
        before = gym.spaces.flatdim(observation_space)
        for width in branch:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ValueError(f"net_arch {net_arch!r}: layer widths are integers >= 1")
            needed += before * width + width
            before = width
        last.append(before)
    needed += min(last) * gym.spaces.flatdim(action_space)  # (flatdim: n, or sum(nvec))
    if needed > held:
        raise ValueError(
            f"its net_arch {net_arch!r} with {action_space} needs at least {needed:,} "
            f"parameters, and its weights hold {held:,}: they do not fit"
        )


def check_spaces(description: Mapping[str, Any], env: gym.Env, where: str | Path) -> None:
    """A ValueError unless ``env`` has the spaces the agent was trained on."""
    for key in ("observation_space", "action_space"):
        trained = space_from_json(description[key])
        mine = getattr(env, key)
        if trained != mine:
            raise ValueError(
                f"{where}: the agent was trained on the {key.replace('_', ' ')} {trained}, "
                f"but the env (--env, --env-kwargs) has {mine}"
            )


def write_checkpoint(folder: Path, name: str, write: Any) -> Path:
    """The checkpoint ``folder / name`` made whole by ``write(tmp_folder)``: written into a
    hidden folder, then renamed, so a kill leaves a hidden partial folder, never a partial
    checkpoint (:func:`splitexit.files.remove_temporaries` clears it)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


# -- signatures of this machine's own pickle folders -------------------------------------------


def key_path() -> Path:
    """The signing key's file: ``$SPLITEXIT_KEY_FILE``, else ``~/.config/splitexit/key``."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "splitexit" / "key"


def _key() -> bytes:
    """This machine's secret signing key (made on first use, readable by its owner only)."""
    path = key_path()
    for _ in range(50):  # (another process may be writing it: wait for the whole key)
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            break
        if len(text) == 64:
            return bytes.fromhex(text)
        time.sleep(0.01)
    else:
        raise ValueError(f"{path}: not a signing key (64 hex digits); delete it to make a new one")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return bytes.fromhex(path.read_text().strip())


def _folder_digest(folder: Path) -> bytes:
    """A digest of every file under ``folder`` (names and contents), the signature aside."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != SIGNATURE_FILE:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.digest()


def sign_folder(folder: Path) -> None:
    """Sign ``folder`` (a checkpoint this process wrote) with this machine's key."""
    mac = hmac.new(_key(), _folder_digest(folder), hashlib.sha256).hexdigest()
    atomic_write_text(folder / SIGNATURE_FILE, json.dumps({"hmac_sha256": mac}) + "\n")


def signed_here(folder: Path) -> bool:
    """Whether ``folder`` is as this machine's key signed it (unchanged, not from elsewhere)."""
    try:
        mac = json.loads((folder / SIGNATURE_FILE).read_text())["hmac_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    mine = hmac.new(_key(), _folder_digest(folder), hashlib.sha256).hexdigest()
    return isinstance(mac, str) and hmac.compare_digest(mac, mine)
