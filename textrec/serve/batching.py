"""Requests that arrive together are computed together: one worker thread, natural batches.

The event loop hands each request that needs the model to :meth:`MicroBatcher.submit` and
awaits it. One worker thread takes whatever has queued up while it was busy (up to
``max_batch``) and computes it in one call, so under load a single model call (or one pass over a
large catalog's vectors) answers several requests, and when idle a request is computed at once
(no timer waits for company). The model runs in one thread only, so it never competes with
itself for the cores the HTTP layer needs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("textrec.serve")


class MicroBatcher:
    """``await submit(x)`` returns ``run([x, ...])[i]``, computed in batches on a worker thread."""

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int = 32,
                 name: str = "textrec-batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.run, self.max_batch = run, int(max_batch)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()
        self.batches = 0
        self.items = 0

    async def submit(self, item: Any) -> Any:
        """The result for ``item`` (its exception, if computing it raised)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((item, fut, loop))
        return await fut

    def close(self) -> None:
        """Stop the worker after the queued work."""
        self._queue.put(None)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._compute(batch)

    def _compute(self, batch: list) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = list(self.run([b[0] for b in batch]))
            outcomes = [(r, None) for r in results]
        except Exception:
            if len(batch) == 1:
                outcomes = [(None, _current_exception())]
            else:  # one bad request must not fail its neighbours: compute them one by one
                outcomes = []
                for b in batch:
                    try:
                        outcomes.append((self.run([b[0]])[0], None))
                    except Exception:
                        outcomes.append((None, _current_exception()))
        for (_, fut, loop), (res, err) in zip(batch, outcomes):
            loop.call_soon_threadsafe(_settle, fut, res, err)


def _current_exception() -> BaseException:
    import sys

    return sys.exc_info()[1]


def _settle(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if fut.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
