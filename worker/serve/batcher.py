"""Dynamic batching: concurrent requests wait a few milliseconds to share one forward pass.

The first request of a batch opens a window of `max_wait_s`; whatever arrives within it (up to
`max_batch`) joins. The batch runs in a worker thread, so the event loop keeps accepting requests,
which queue for the next batch meanwhile. Up to `concurrency` batches run at once (on a CPU host,
cores / torch threads: two one-thread forward passes keep two cores busy where one cannot); a new batch
is gathered only when a slot is free, so requests that arrive while every slot is busy form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], list[R]], max_batch: int = 32, max_wait_s: float = 0.005,
                 on_batch: Callable[[int], None] | None = None, concurrency: int = 1) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self.concurrency = concurrency
        self._running: set[asyncio.Task[None]] = set()
        self._carry: list[tuple[T, asyncio.Future[R]]] = []
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item: T) -> R:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _gather(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: requests left over by the last split first (they have waited), else a window's worth.
        When other slots are free too, the batch takes its share and leaves the rest to them (32 requests and two free
        slots: two batches of 16 side by side, not one of 32 beside an idle slot)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        if self._carry:
            batch, self._carry = self._carry[: self.max_batch], self._carry[self.max_batch :]
            deadline = loop.time()  # these have waited their window already
        else:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())  # already waiting: no reason to sleep for it
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        free = self.concurrency - len(self._running)  # this batch's slot included
        if free > 1:
            share = -(-len(batch) // free)
            batch, self._carry = batch[:share], batch[share:] + self._carry
        return batch

    async def _loop(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        try:
            while True:
                await slots.acquire()
                batch = await self._gather()
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]  # clients that hung up are skipped
                if not live:
                    slots.release()
                    continue
                if self._on_batch is not None:
                    self._on_batch(len(live))
                task = asyncio.create_task(self._answer(live))
                self._running.add(task)
                task.add_done_callback(lambda t: (self._running.discard(t), slots.release()))
        finally:
            for task in self._running:
                task.cancel()

    async def _answer(self, live: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await asyncio.to_thread(self._run, [item for item, _ in live])
        except Exception as exc:  # noqa: BLE001 (handed to each waiting request)
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)
