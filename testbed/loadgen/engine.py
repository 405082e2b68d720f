"""Build (once, cached by source hash) and run the C engine; decode its per-request records."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from testbed.errors import LoadgenBuildFailed, MissingBinary

SOURCE = Path(__file__).with_name("engine.c")

RECORD_DTYPE = np.dtype([("intended_ns", "<i8"), ("sent_ns", "<i8"), ("done_ns", "<i8"),
                         ("status", "<i4"), ("error", "<i4")])
"""One request, as the engine writes it (times in ns from the engine's start)."""

ERRORS = {0: "ok", 1: "connect", 2: "closed", 3: "timeout", 4: "malformed response", 5: "not sent"}
"""The engine's error codes. `not sent`: due in an open-loop run but still queued when it ended."""


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise MissingBinary("cc", "CC", "apt-get install gcc")
    return cc


def binary(cache_dir: Path | None = None) -> Path:
    """Path of the compiled engine, compiling it first if this source has not been built yet."""
    if cache_dir is None:
        from testbed.settings import Settings

        cache_dir = Settings().state_dir / "bin"
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    target = cache_dir / f"loadgen-engine-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{target.name}.{os.getpid()}"
    cmd = [compiler(), "-O2", "-pthread", "-o", str(tmp), str(SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LoadgenBuildFailed(" ".join(cmd), (proc.stderr or proc.stdout)[-2000:])
    os.replace(tmp, target)
    return target


def run_engine(args: list[str], timeout_s: float, cache_dir: Path | None = None) -> tuple[dict, np.ndarray, dict]:
    """Run the engine with args (without --out); returns (summary, records, client CPU usage)."""
    exe = binary(cache_dir)
    with tempfile.TemporaryDirectory(prefix="testbed-loadgen-") as tmp:
        out = Path(tmp) / "records.bin"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([str(exe), *args, "--out", str(out)], capture_output=True, text=True,
                              timeout=timeout_s)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"load engine exited {proc.returncode}: {proc.stderr.strip()}")
        summary = json.loads(proc.stdout)
        records = np.fromfile(out, dtype=RECORD_DTYPE)
    cpu = {"user_s": after.ru_utime - before.ru_utime, "system_s": after.ru_stime - before.ru_stime}
    if records.size != summary["records"]:
        raise RuntimeError(f"load engine wrote {records.size} records, reported {summary['records']}")
    return summary, records, cpu
