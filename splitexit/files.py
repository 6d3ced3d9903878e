"""Atomic file writes (a reader sees the old file or the new one, never half of one), and the
lock of a run folder (one run writes it at a time)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

TMP_SUFFIX = ".tmp"  # of the hidden files and folders a write in progress makes


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_regular_file(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path``, which must be a regular file (symlinks followed) of at most
    ``max_bytes``: a FIFO, a device (``/dev/zero``) or a folder is refused with a ValueError
    naming the file, without blocking or reading it; a missing one is a FileNotFoundError."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # (a FIFO would block without it)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: {what} is a folder, not a regular file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = (
            "a folder, not a regular file" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        )
        raise ValueError(f"{path}: {what} is {kind}")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > max_bytes:
            raise ValueError(f"{path}: {what} has {info.st_size} bytes, at most {max_bytes}")
        data = f.read(info.st_size + 1)  # (its size, not a buffer of the bound)
        if len(data) > info.st_size:  # it grew since: read on, to one byte past the bound
            data += f.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise ValueError(f"{path}: {what} has more than {max_bytes} bytes")
    return data


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove what killed writes left in ``folder``: hidden ``.*.tmp`` files of
    :func:`atomic_write_bytes` and hidden ``.tmp-*`` folders of checkpoints in progress.
    Call it only while holding the folder's lock. Returns what it removed."""
    folder = Path(folder)
    removed = []
    for p in folder.glob(".*") if folder.is_dir() and not folder.is_symlink() else []:
        if p.is_symlink():
            continue  # never followed to delete: not a temporary a write of this package made
        if p.is_file() and p.name.endswith(TMP_SUFFIX):
            p.unlink(missing_ok=True)
        elif p.is_dir() and p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
        else:
            continue
        removed.append(p)
    return removed


def symlinks_in(folder: str | Path) -> list[Path]:
    """``[folder]`` if it is a symbolic link, else the links anywhere under it (none followed):
    a run folder holding one would send writes and deletions to the link's target."""
    folder = Path(folder)
    if folder.is_symlink():
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):  # (a linked folder is listed, not entered)
        found += [Path(root, name) for name in dirs + files if Path(root, name).is_symlink()]
    return sorted(found)


LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """The folder is locked by a live process (or its lock is not a file a run wrote)."""


MAX_LOCK_BYTES = 4096  # "<pid> <start time>\n" is about 30


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` (Linux ``/proc``), "" where unknown: with the PID, it
    tells a live owner from a later process that reused its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22, starttime


def _alive(owner: str) -> bool:
    """Whether the lock owner ``"<pid> <start>"`` still runs (False for a garbled owner)."""
    pid_text, _, start = owner.strip().partition(" ")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return not start or _process_start(pid) in ("", start)


class FolderLock:
    """An exclusive lock on a folder while a run writes it: the file ``folder/.lock``, created
    atomically (``O_CREAT | O_EXCL``) and holding ``"<pid> <start time>"``.

    A second process finds the file and raises :class:`RunLocked`, unless its owner no longer
    runs (killed: a stale lock), which it then takes over. The lock is released on exit of the
    ``with`` block, exceptions included."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.owner = f"{os.getpid()} {_process_start(os.getpid())}".strip()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(self.owner + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read(self) -> str | None:
        """The owner in the lock file ("" while its creator has not written it yet), or None
        when there is no lock file."""
        try:
            data = read_regular_file(self.path, MAX_LOCK_BYTES, "run lock")
            return data.decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        except ValueError as err:  # a folder, a FIFO, a huge file: not a lock of this package's
            raise RunLocked(f"{err}; it is not a lock a run wrote: remove it") from None

    def acquire(self) -> FolderLock:
        for _ in range(20):
            if self._create():
                return self
            owner = self._read()
            if owner is None:
                continue  # released meanwhile
            if not owner.strip():  # being written, or its writer was killed at once
                time.sleep(0.1)
                owner = self._read()
                if owner is None:
                    continue
            if owner.strip() and _alive(owner):
                pid = owner.split()[0]
                raise RunLocked(
                    f"{self.path.parent} is in use by another run (process {pid}); "
                    f"wait for it to end, or choose another name"
                )
            # Stale: move it aside under a name of our own, then check that what we moved is
            # the stale lock and not a fresh one another process took over meanwhile.
            aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue
            moved = aside.read_text()
            if moved.strip() and moved != owner and _alive(moved):
                try:
                    os.link(aside, self.path)  # give it back
                finally:
                    aside.unlink()
                continue
            aside.unlink()
        raise RunLocked(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self._read() == self.owner + "\n":
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
