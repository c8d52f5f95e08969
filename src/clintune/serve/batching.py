"""Micro-batching: requests from many callers, run by one inference worker in shared batches.

Each request is a list of texts. The worker takes the oldest waiting request, then keeps
gathering until the batch holds ``max_texts`` texts or ``max_wait`` seconds have passed since
it took the first one (a request is never split: one larger than ``max_texts`` runs alone),
runs the whole batch in one call and hands every caller its own results, in its own order.
Under load the wait rarely matters: requests queue while a batch runs and the next batch
takes them all at once, so throughput rises with the number of concurrent callers.

Only the standard library here: the worker is a thread, callers get a
``concurrent.futures.Future`` (``asyncio.wrap_future`` awaits it in an event loop).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("clintune.serve")


@dataclass
class Request:
    """One caller's texts and where its results go."""

    texts: Sequence[str]
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


class WorkerStopped(RuntimeError):
    """The worker is stopping or has stopped and takes no new requests."""


class Overloaded(RuntimeError):
    """More texts are waiting or running than the batcher holds; the caller should retry later."""


class MicroBatcher:
    """One worker thread running ``run(texts) -> results`` (one result per text, in order) over gathered requests.

    A batch that fails is retried one request at a time, so a request that breaks the model
    fails alone and the worker keeps going. ``load`` (optional) runs first, on the worker
    thread, and ``ready`` is set when it has succeeded.
    """

    def __init__(self, run: Callable[[list[str]], list[Any]], max_texts: int = 32, max_wait: float = 0.005,
                 load: Callable[[], Any] | None = None, max_pending: int | None = None) -> None:
        if max_texts < 1 or max_wait < 0 or (max_pending is not None and max_pending < 1):
            raise ValueError("max_texts and max_pending must be >= 1 and max_wait >= 0")
        self.run, self.max_texts, self.max_wait, self.load = run, max_texts, max_wait, load
        # Texts queued or running, at most ``max_pending``: past it a caller is told to come back (503)
        # rather than wait behind minutes of work that its own client will have given up on.
        self.max_pending = max_pending
        self.pending = 0
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._accepting = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="clintune-inference", daemon=True)
        self.batches = 0  # counters, for logs and tests
        self.largest_batch = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, texts: Sequence[str]) -> Future:
        """Queue ``texts``; the future resolves to their results (or the exception that stopped them)."""
        request = Request(texts)
        with self._lock:
            if not self._accepting:
                raise WorkerStopped("the inference worker is stopping")
            if self._thread.ident is not None and not self._thread.is_alive():
                raise WorkerStopped("the inference worker has stopped")
            if self.max_pending is not None and self.pending and self.pending + len(texts) > self.max_pending:
                raise Overloaded(f"{self.pending} text(s) are waiting or running (at most {self.max_pending})")
            self.pending += len(texts)
            self._queue.put(request)
        request.future.add_done_callback(lambda _: self._release(len(texts)))  # answered, failed or cancelled
        return request.future

    def _release(self, n_texts: int) -> None:
        with self._lock:
            self.pending -= n_texts

    def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, finish every queued one, and end the worker."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread ------------------------------------------------------------

    def _work(self) -> None:
        if self.load is not None:
            try:
                self.load()
            except BaseException as exc:  # reported by whoever waits on the worker; queued callers get it too
                self.load_error = exc
                self._fail_queued(exc)
                return
        self.ready.set()
        carried: Request | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            if first is None:
                return
            batch, carried, stopping = self._gather(first)
            self._run_batch(batch)
            if stopping:
                return

    def _gather(self, first: Request) -> tuple[list[Request], Request | None, bool]:
        """``first`` and the requests that join it: (batch, a request left for the next batch, stop seen)."""
        batch, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_texts:
            remaining = deadline - time.monotonic()
            try:
                following = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if following is None:
                return batch, None, True
            if size + len(following.texts) > self.max_texts:
                return batch, following, False
            batch.append(following)
            size += len(following.texts)
        return batch, None, False

    def _run_batch(self, batch: list[Request]) -> None:
        batch = [request for request in batch if not request.future.cancelled()]  # callers that gave up
        if not batch:
            return
        texts = [text for request in batch for text in request.texts]
        started = time.monotonic()
        try:
            results = self.run(texts)
            if len(results) != len(texts):
                raise RuntimeError(f"the model returned {len(results)} results for {len(texts)} texts")
        except Exception as exc:
            if len(batch) > 1:  # find the request that broke it; the others still get answers
                for request in batch:
                    self._run_batch([request])
                return
            self._log_failure(exc, len(texts))
            _resolve(batch[0].future, exception=exc)
            return
        seconds = time.monotonic() - started
        waited = started - min(request.queued_at for request in batch)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(texts))
        logger.info("predicted %d text(s), %d characters, from %d request(s) in %.0f ms (oldest waited %.0f ms)",
                    len(texts), sum(len(t) for t in texts), len(batch), seconds * 1000, waited * 1000)
        start = 0
        for request in batch:
            _resolve(request.future, result=results[start : start + len(request.texts)])
            start += len(request.texts)

    def _fail_queued(self, exc: BaseException) -> None:
        with self._lock:
            self._accepting = False
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                _resolve(request.future, exception=exc)

    @staticmethod
    def _log_failure(exc: Exception, n_texts: int) -> None:
        # The exception's type and where it was raised, never its message: that may quote the text.
        stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
        logger.error("inference failed for a request of %d text(s): %s\n%s", n_texts, type(exc).__name__, stack)


def _resolve(future: Future, result: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:  # the caller cancelled meanwhile
        pass
