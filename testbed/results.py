"""Results: typed, versioned records of one measurement, written atomically under results/.

Layout: results/<run-id>/<experiment>/<probe>-<platform>-r<repeat>.json plus run.json (what
the run was: backend, platforms, seeds, versions, hardware; written by testbed.experiment.Run alone). A result names the artifact by
sha256; the report refuses to merge results of different artifacts silently.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testbed.settings import REPO_ROOT
from testbed.state import atomic_write_json

SCHEMA = "testbed.result/v1"
RESULTS_DIR = Path(os.environ.get("TESTBED_RESULTS_DIR", REPO_ROOT / "results"))


@dataclass
class Result:
    probe: str
    """What was measured: parity, outlier, drift, monitoring, explain, robustness, latency, ..."""

    platform: str
    backend: str
    artifact_sha256: str
    verdict: str
    """One word a table can show: e.g. detected / missed / pass / fail / unsupported / error."""

    scores: dict = field(default_factory=dict)
    """Named numbers the report shows (precision, recall, fpr, delay_samples, ...)."""

    measurements: dict = field(default_factory=dict)
    """Raw data behind the scores (per-request timelines, p-values, flags)."""

    evidence: dict = field(default_factory=dict)
    """How to reproduce and trust it: PromQL queries, seeds, sample counts, versions, detection path."""

    mechanism: str | None = None
    """How the platform did it: native / add-on / user code / probe tee / none."""

    run_id: str = ""
    repeat: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    schema: str = SCHEMA

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Result":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"result schema {data.get('schema')!r}, expected {SCHEMA!r}")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def hardware() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
            "machine": _platform.machine(), "kernel": _platform.release(), "python": _platform.python_version()}


def write(result: Result, run_dir: Path, experiment: str) -> Path:
    result.finished_at = result.finished_at or time.time()
    path = run_dir / experiment / f"{result.probe}-{result.platform}-r{result.repeat}.json"
    atomic_write_json(path, result.to_json())
    return path


def read_run(run_dir: Path) -> list[Result]:
    out = []
    for path in sorted(run_dir.rglob("*.json")):
        if path.name == "run.json":
            continue
        out.append(Result.from_json(json.loads(path.read_text())))
    return out
