"""How busy the machine was while a benchmark ran, and how much of that was the benchmark itself.

The load average counts the benchmark's own processes (the sandbox's threads, the keyturn child), so
it cannot tell a quiet machine from a busy one. :class:`LoadMeter` reads the CPU time the whole
machine spent (``/proc/stat``) and the CPU time of this process and its reaped children
(``getrusage``), and reports the average number of cores others used meanwhile.
"""

from __future__ import annotations

import os
import resource
import time
from types import TracebackType
from typing import Any


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    ticks = [int(x) for x in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


class LoadMeter:
    def __enter__(self) -> LoadMeter:
        self.load_before = os.getloadavg()
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy_seconds()
        self.own0 = _own_seconds()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.load_after = os.getloadavg()
        self.wall = time.monotonic() - self.t0
        busy1 = _machine_busy_seconds()
        self.busy = None if busy1 is None or self.busy0 is None else busy1 - self.busy0
        self.own = _own_seconds() - self.own0

    def report(self) -> dict[str, Any]:
        cores = (lambda s: None if s is None else round(s / self.wall, 2)) if self.wall > 0 else (lambda s: None)
        others = None if self.busy is None else max(0.0, self.busy - self.own)
        return {
            "cpus": os.cpu_count(),
            "wall_s": round(self.wall, 1),
            "loadavg_before": [round(x, 2) for x in self.load_before],
            "loadavg_after": [round(x, 2) for x in self.load_after],
            "busy_cores_all": cores(self.busy),
            "busy_cores_benchmark": cores(self.own),
            "busy_cores_others": cores(others),
        }

    def line(self) -> str:
        r = self.report()
        return (
            f"machine: {r['cpus']} CPUs; load average before {' '.join(map(str, r['loadavg_before']))}, after "
            f"{' '.join(map(str, r['loadavg_after']))}; over {r['wall_s']} s, cores busy on average: "
            f"{r['busy_cores_all']} in all, {r['busy_cores_benchmark']} this benchmark, {r['busy_cores_others']} others"
        )


def others_busy_cores(window: float = 2.0) -> float | None:
    """Cores busy on average over ``window`` seconds, minus this process's (and reaped children's) share."""
    busy0, own0, t0 = _machine_busy_seconds(), _own_seconds(), time.monotonic()
    time.sleep(window)
    busy1, own1, t1 = _machine_busy_seconds(), _own_seconds(), time.monotonic()
    if busy0 is None or busy1 is None:
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def wait_for_quiet(threshold: float | None, *, max_wait: float = 120.0) -> float | None:
    """With a threshold, wait (at most ``max_wait`` s) until others use fewer cores than it; the last reading."""
    if threshold is None:
        return None
    deadline = time.monotonic() + max_wait
    while True:
        others = others_busy_cores()
        if others is None or others < threshold or time.monotonic() > deadline:
            return others
