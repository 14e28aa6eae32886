"""Counters for `/metrics`, in the Prometheus text format (no client library: three families suffice)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.n}"]
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.batch_size = _Histogram(tuple(float(b) for b in BATCH_BUCKETS))

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS_S)).observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_size.observe(float(size))

    def render(self, forward_passes: int) -> str:
        with self._lock:
            lines = ["# HELP llmos_serve_requests_total Requests answered, by endpoint and HTTP status.",
                     "# TYPE llmos_serve_requests_total counter"]
            lines += [f'llmos_serve_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP llmos_serve_request_seconds Request latency, by endpoint.", "# TYPE llmos_serve_request_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("llmos_serve_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP llmos_serve_batch_size Requests per forward pass of the dynamic batcher.",
                      "# TYPE llmos_serve_batch_size histogram", *self.batch_size.lines("llmos_serve_batch_size"),
                      "# HELP llmos_serve_forward_passes_total Forward passes of the model (one per batch; one per new token of a batch of generations).",
                      "# TYPE llmos_serve_forward_passes_total counter", f"llmos_serve_forward_passes_total {forward_passes}"]
            return "\n".join(lines) + "\n"
