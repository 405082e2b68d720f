"""The running testbed's state file: what `up` started, so `status` and `down` can find it.

Written atomically (write to a temp file, then rename) after every change, so a killed `up`
leaves a file that `down` can act on.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from testbed.errors import AlreadyRunning

SCHEMA = "testbed.state/v1"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def state_file(run_dir: Path) -> Path:
    return run_dir / "state.json"


def load(run_dir: Path) -> dict | None:
    path = state_file(run_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"schema": SCHEMA, "corrupt": True, "platforms": {}}
    return data


def save(run_dir: Path, data: dict) -> None:
    atomic_write_json(state_file(run_dir), {"schema": SCHEMA, **data})


@contextmanager
def exclusive(run_dir: Path, what: str):
    """Hold the run directory's lock: a second `up`/`down` at the same time gets AlreadyRunning."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir.parent / "testbed.lock"
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise AlreadyRunning(f"Another testbed command ({holder})",
                                 f"it holds {lock_path}; wait for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"`{what}`, pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
