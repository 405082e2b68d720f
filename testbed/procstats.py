"""Process accounting of a runtime's whole session (all its processes) from /proc, and what it costs.

Local runtimes run in a session of their own (testbed/backends/local/processes.py), so the
session id names everything a platform runs: Ray's raylet, GCS, proxy and replicas included.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.backends.local import processes

CLK_TCK = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(sid: int, members=None) -> float:
    """user + system CPU seconds of every live process in the session (children it reaped included);
    members() names the processes instead, for a runtime that starts some outside its session."""
    total = 0
    for pid in (members() if members else processes.session_members(sid)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11..14] = utime stime cutime cstime (stat fields 14-17)
        total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


@dataclass
class Usage:
    cpu_s: float
    wall_s: float
    peak_rss_bytes: int
    mean_rss_bytes: int
    samples: int


class SessionMeter:
    """CPU seconds used and peak/mean resident memory of one session while the `with` block runs."""

    def __init__(self, sid: int, interval_s: float = 0.2, members=None):
        self.sid = sid
        self.members = members or (lambda: processes.session_members(sid))
        """() -> the pids to account for (LocalProcess.members of the runtime); its session by default."""
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._rss: list[int] = []
        self.usage: Usage | None = None

    def _sample(self):
        while not self._stop.is_set():
            self._rss.append(processes.rss_bytes(self.members()))
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._cpu0 = session_cpu_seconds(self.sid, self.members)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        cpu = session_cpu_seconds(self.sid, self.members) - self._cpu0
        rss = self._rss or [processes.rss_bytes(self.members())]
        self.usage = Usage(cpu_s=max(cpu, 0.0), wall_s=time.monotonic() - self._t0, peak_rss_bytes=max(rss),
                           mean_rss_bytes=int(sum(rss) / len(rss)), samples=len(rss))
        return False


@dataclass(frozen=True)
class Prices:
    """Prices that turn resource use into money; defaults are list prices of on-demand serverless
    containers (about USD 0.04 per vCPU-hour and 0.0045 per GB-hour). Configurable per run."""

    vcpu_hour: float = 0.04048
    gb_hour: float = 0.004445
    currency: str = "USD"


def cost_per_1000(usage: Usage, predictions: int, prices: Prices) -> dict:
    """CPU-seconds, peak memory and cost per 1,000 predictions.

    CPU is billed as used (CPU-seconds); memory as held: the peak resident set for as long as
    1,000 predictions take at the measured rate (GB x seconds).
    """
    if predictions <= 0:
        return {"predictions": 0, "cpu_s_per_1000": None, "peak_rss_mb": usage.peak_rss_bytes / 2**20,
                "cost_per_1000": None, "currency": prices.currency}
    k = 1000.0 / predictions
    cpu_s = usage.cpu_s * k
    gb = usage.peak_rss_bytes / 2**30
    gb_s = gb * usage.wall_s * k
    cpu_cost = cpu_s / 3600 * prices.vcpu_hour
    mem_cost = gb_s / 3600 * prices.gb_hour
    return {"predictions": predictions, "cpu_s_per_1000": cpu_s, "peak_rss_mb": usage.peak_rss_bytes / 2**20,
            "gb_s_per_1000": gb_s, "cpu_cost_per_1000": cpu_cost, "memory_cost_per_1000": mem_cost,
            "cost_per_1000": cpu_cost + mem_cost, "cost_per_million": (cpu_cost + mem_cost) * 1000,
            "currency": prices.currency, "prices": {"vcpu_hour": prices.vcpu_hour, "gb_hour": prices.gb_hour}}
