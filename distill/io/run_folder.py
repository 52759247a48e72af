"""One run per folder, and how a run that was asked to stop says so.

`RunLock` takes an exclusive lock (`fcntl.flock`) on a lock file for as long as a run uses its folder (or a sweep its
results file); the operating system releases it when the process ends, however it ends, so a run killed with SIGKILL
can be resumed at once. A second run into the same folder is refused at once with the holder's PID, start time and
command. `RunStopped` is what a training loop raises after a SIGINT or SIGTERM, once its checkpoint is written;
`Terminated` is SIGTERM raised where the process was, as Ctrl-C raises KeyboardInterrupt.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

LOCK_NAME = ".gendistiller.lock"  # inside a locked folder


def blocking_file(folder: str | Path) -> Optional[Path]:
    """The file (not a folder) at `folder` or at one of its parents, which keeps it from being a folder; or None."""
    folder = Path(folder)
    return next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)


class RunLockError(ValueError):
    """The folder or file is in use by another run."""


class RunLock:
    """`with RunLock.folder(path, "run.output_dir"):` holds an exclusive lock on `path/.gendistiller.lock` (the folder
    is created); `RunLock.file(path, "--results")` one on `.NAME.lock` beside a file. `setting` names what the user can
    change to run elsewhere. Non-blocking: raises RunLockError naming the holder when the lock is taken."""

    def __init__(self, lock_path: Path, target: Path, setting: str):
        self.lock_path, self.target, self.setting = lock_path, target, setting
        self._fd: Optional[int] = None

    @classmethod
    def folder(cls, folder: str | Path, setting: str) -> RunLock:
        folder = Path(folder)
        return cls(folder / LOCK_NAME, folder, setting)

    @classmethod
    def file(cls, path: str | Path, setting: str) -> RunLock:
        path = Path(path)
        return cls(path.with_name(f".{path.name}.lock"), path, setting)

    def __enter__(self) -> RunLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLockError(f"{self.target} is in use by another run ({holder}); wait for it to end or choose "
                               f"another {self.setting}") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv[1:])}).encode())
        self._fd = fd
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], trace: Optional[TracebackType]) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock; the file stays, unlocked
            self._fd = None


def _holder(fd: int) -> str:
    """"PID 123, started 2026-12-01 10:00:00: COMMAND" from the lock file, as far as it can be read."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0).decode())
        return f"PID {holder['pid']}, started {holder['started']}, running: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its PID is not recorded yet"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was (as Ctrl-C raises KeyboardInterrupt)."""


class RunStopped(Exception):
    """A run stopped on a signal after writing its checkpoint; the command exits with 128 + the signal's number."""

    def __init__(self, step: int, signum: int, checkpoint: Optional[Path], resume: str = "resume with --resume"):
        name = signal.Signals(signum).name
        written = f" (checkpoint {checkpoint})" if checkpoint is not None else ""
        super().__init__(f"{name}: stopped at step {step}; {resume}{written}")
        self.step, self.signum, self.checkpoint = step, signum, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def resuming_with(self, resume: str) -> RunStopped:
        """The same stop, telling another way to resume (the demo resumes when rerun)."""
        return RunStopped(self.step, self.signum, self.checkpoint, resume)
