"""`llmos bench serve`: the served model beside a bare `transformers` pipeline, on the same model in the same run.

The model is the packaged MiniLM with a sequence-classification head, exported as a job's output and served
the way `llmos serve` serves it (`python -m worker serve`, weights on stdin). Requests are the sample dataset's
texts, one per request. At each concurrency level, `c` clients send requests back to back for a fixed time:
over HTTP to the server (asyncio clients in this process), and as direct calls of a text-classification
pipeline from `c` threads (the bare baseline: no HTTP, no batching). Each side gets a short warm-up first.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmos_chain.recipe import Recipe
from llmos_chain.serving import ModelServer

WARMUP_S = 0.5


def _sample_rows() -> list[dict[str, Any]]:
    from importlib import resources

    raw = resources.files("llmos_chain.samples").joinpath("support_intents.jsonl").read_text()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def bench_recipe() -> Recipe:
    return Recipe.parse(json.dumps({"task": "sequence-classification", "method": "full",
                                    "base_model": {"kind": "pretrained", "name": "minilm-l6"}, "hyper": {"max_length": 64}}))


def _texts() -> list[str]:
    return [row["text"] for row in _sample_rows()]


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
    return {"rps": round(len(ordered) / elapsed, 1), "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else float("nan"),
            "p99_ms": round(p99 * 1000, 1)}


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes) -> None:
    """One keep-alive HTTP/1.1 request, by hand: a general-purpose client costs more CPU than the server's work
    and would be measured instead of it on a small host."""
    writer.write(b"POST /v1/classify HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"the server answered {status}")


async def _http_load(url: str, texts: list[str], clients: int, seconds: float) -> tuple[list[float], float]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    latencies: list[float] = []
    connections = [await asyncio.open_connection(host, port) for _ in range(clients)]

    async def client(i: int, until: float, record: bool) -> None:
        reader, writer = connections[i]
        n = i
        while time.perf_counter() < until:
            started = time.perf_counter()
            await _post(reader, writer, parts.netloc, bodies[n % len(bodies)])
            if record:
                latencies.append(time.perf_counter() - started)
            n += clients

    try:
        await asyncio.gather(*(client(i, time.perf_counter() + WARMUP_S, False) for i in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(client(i, started + seconds, True) for i in range(clients)))
        return latencies, time.perf_counter() - started
    finally:
        for _, writer in connections:
            writer.close()


def _thread_load(call: Callable[[str], Any], texts: list[str], clients: int, seconds: float) -> tuple[list[float], float]:
    def client(i: int, until: float) -> list[float]:
        out, n = [], i
        while time.perf_counter() < until:
            started = time.perf_counter()
            call(texts[n % len(texts)])
            out.append(time.perf_counter() - started)
            n += clients
        return out

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: client(i, time.perf_counter() + WARMUP_S), range(clients)))
        started = time.perf_counter()
        results = list(pool.map(lambda i: client(i, started + seconds), range(clients)))
        return [x for r in results for x in r], time.perf_counter() - started


def _batches(url: str) -> tuple[float, float]:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics") as response:  # noqa: S310 (our own server)
        text = response.read().decode()
    pick = lambda name: sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))  # noqa: E731
    return pick("llmos_serve_batch_size_sum"), pick("llmos_serve_batch_size_count")


def measure(clients: list[int], seconds: float = 3.0, max_batch: int = 32, max_wait_ms: float = 5.0,
            threads: int | None = None) -> dict[str, Any]:
    """Each side runs torch on the same number of threads (default half the cores: the clients need the rest)."""
    import torch
    import transformers

    from worker import models, train

    threads = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    recipe = bench_recipe()
    texts = _texts()
    labels = sorted({str(row["label"]) for row in _sample_rows()})
    loaded = models.load(recipe, len(labels))
    weights = train.export(loaded.model, recipe, labels)
    loaded.model.eval()
    pipe = transformers.pipeline("text-classification", model=loaded.model, tokenizer=loaded.tokenizer, device=-1)

    def bare(text: str) -> Any:
        with torch.inference_mode():
            return pipe(text)

    runs = []
    with ModelServer.start(recipe.canonical_bytes().decode(), weights, max_batch=max_batch, max_wait_ms=max_wait_ms,
                           threads=threads) as server:
        url = server.serve()
        for c in clients:
            sum0, count0 = _batches(url)
            served = _summary(*asyncio.run(_http_load(url, texts, c, seconds)))
            sum1, count1 = _batches(url)
            baseline = _summary(*_thread_load(bare, texts, c, seconds))
            runs.append({"clients": c, **served, "bare_rps": baseline["rps"], "bare_p50_ms": baseline["p50_ms"],
                         "bare_p99_ms": baseline["p99_ms"], "speedup": round(served["rps"] / baseline["rps"], 2),
                         "mean_batch": round((sum1 - sum0) / max(1.0, count1 - count0), 1)})
    return {"model": "minilm-l6 (sequence classification)", "device": "cpu" if not torch.cuda.is_available() else "cuda",
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "seconds_per_level": seconds,
            "max_batch": max_batch, "max_wait_ms": max_wait_ms, "runs": runs, "target": {"clients": 32, "speedup": 2.0}}
