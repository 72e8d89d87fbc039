"""One run per output folder: a lock file that names its holder (pid, host, start time, command).

The lock is created with ``O_CREAT | O_EXCL``, so of two runs started on the same folder exactly one gets it.
A lock whose holder ran on this host and no longer exists (killed with SIGKILL, machine reboot) is stale and is
taken over; a lock from another host is never broken automatically. Knows nothing about ranks or results.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from fame_utils.runtime import process_alive

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """Another run holds the output folder."""


class RunLock:
    """Exclusive hold on a run folder, released on exit (also after an exception).

    Args:
        folder: the run folder; the lock is ``folder/run.lock``.
        description: what the holder is doing (recorded in the lock, shown to refused runs).

    Raises (on entry):
        RunLockedError: a live run holds the folder (the message names its pid, host, start and command).
    """

    def __init__(self, folder: str | Path, description: str = "") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.description = description or " ".join(sys.argv)
        self.took_over: dict | None = None

    def holder(self) -> dict | None:
        """The current holder's record, or None when the folder is free (an unreadable lock counts as held)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": None, "started": None, "command": f"unreadable lock file {self.path}"}

    def _stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and not process_alive(pid)

    def acquire(self) -> None:
        """Take the lock (see the class)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": self.description}
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue
                if self._stale(holder):
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"{self.path.parent} is in use by another run: pid {holder.get('pid')} on host {holder.get('host')}, "
                    f"started {holder.get('started')} ({holder.get('command')}). Wait for it to finish, or use another --out. "
                    f"If that run is dead (e.g. on another host), delete {self.path} and start again."
                )
            with os.fdopen(handle, "w") as file:
                file.write(json.dumps(record) + "\n")
            return
        raise RunLockedError(f"could not take {self.path}: another run keeps creating it; use another --out.")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        holder = self.holder()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.release()
