"""The host's accelerators sampled by the coordinator: each GPU's utilisation and memory through NVML
(`nvidia-ml-py`, when installed and a driver answers), else the CPU's and the memory's through psutil.
Samples are kept for the last hour, in memory (a restart starts a new hour)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("llmos.dashboard")

WINDOW_S = 3600.0

Sample = dict[str, float]


def _nvml_reader() -> Callable[[], Sample] | None:
    """A reader of every GPU's utilisation and memory (percent), or None without NVML."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped]  # from nvidia-ml-py, optional

        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - no package, no driver, no device: fall back to psutil
        return None
    if count == 0:
        return None
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def read() -> Sample:
        out: Sample = {}
        for i, handle in enumerate(handles):
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out[f"gpu{i} util %"] = float(util.gpu)
            out[f"gpu{i} mem %"] = 100.0 * float(mem.used) / float(mem.total or 1)
        return out

    return read


def _psutil_reader() -> Callable[[], Sample]:
    import psutil

    psutil.cpu_percent(None)  # the first call only starts the measurement

    def read() -> Sample:
        return {"cpu util %": float(psutil.cpu_percent(None)), "cpu mem %": float(psutil.virtual_memory().percent)}

    return read


class ResourceSampler:
    """Samples every `interval_s` in a daemon thread; `series()` gives the last hour."""

    def __init__(self, interval_s: float = 5.0, window_s: float = WINDOW_S, reader: Callable[[], Sample] | None = None) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        nvml = None if reader is not None else _nvml_reader()
        self._read = reader or nvml or _psutil_reader()
        self.source = "custom" if reader is not None else "nvml" if nvml is not None else "psutil"
        self.samples: deque[tuple[float, Sample]] = deque(maxlen=max(2, int(window_s / interval_s) + 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        try:
            values = self._read()
        except Exception as exc:  # noqa: BLE001 - a failed reading is a gap in the chart, not a dead sampler
            log.debug("resource sample failed: %s", exc)
            return
        now = time.time()
        with self._lock:
            self.samples.append((now, values))
            while self.samples and self.samples[0][0] < now - self.window_s:
                self.samples.popleft()

    def series(self) -> list[tuple[float, Sample]]:
        with self._lock:
            return list(self.samples)

    def start(self) -> None:
        if self._thread is not None:
            return
        self.sample()
        self._thread = threading.Thread(target=self._run, name="llmos-resource-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()

    def __repr__(self) -> str:
        return f"ResourceSampler({self.source}, every {self.interval_s} s)"


_shared: ResourceSampler | None = None
_shared_lock = threading.Lock()


def shared_sampler() -> ResourceSampler:
    """The process's sampler (it samples the host, so every dashboard in the process shares it), started."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ResourceSampler()
            _shared.start()
        return _shared


def describe(sampler: ResourceSampler) -> str:
    return {"nvml": "NVML (nvidia-ml-py): each GPU", "psutil": "psutil: no NVML on this host, so its CPU and memory"}.get(
        sampler.source, sampler.source)
