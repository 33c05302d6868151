"""Server-side batching: concurrent requests of one key (model and waveform shape) run as one call.

The first request of a key opens a batch and leads it; requests of the same key that arrive while the
batch is open join it. The leader waits until the batch is full (`max_batch_size`) or `timeout_s` has
passed, then for a free run slot (the server's --max_concurrent_runs), and closes the batch only when
it has the slot: while the model is busy, a batch keeps filling, so batches grow with the load and a
lone request waits at most `timeout_s` more than unbatched. The leader runs the whole batch with
`run_batch`; should that fail, every request of the batch is run alone with `run_one`, so a bad
request fails on its own and never takes the others down with it.

Pure Python (no TensorFlow): the server passes the functions that call the model.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
from typing import Any, Callable, Hashable

from svsgan_tf.errors import first_line

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_BATCH_TIMEOUT_MICROS = 2000


class _Batch:
    """The items of one open or running batch, and what each one's request gets back."""

    def __init__(self):
        self.items: list = []
        self.results: list = []
        self.errors: list = []
        self.full = threading.Event()          # set when no item may join any more
        self.done = threading.Event()          # set when results and errors are filled


def _interrupted(cause: BaseException) -> RuntimeError:
    """What the other requests of an interrupted batch raise (one error each, caused by `cause`)."""
    error = RuntimeError(f"the batch was interrupted ({type(cause).__name__})")
    error.__cause__ = cause
    return error


class BatchQueue:
    """Joins concurrent `submit` calls of one key into batches (see the module docstring).

    Args:
        max_batch_size: the most items in one batch (>= 1).
        timeout_s: how long a batch's first item waits for others before it asks for a run slot (>= 0).
        slots: a context manager held while a batch runs; None: no limit. The server sets it to its
            semaphore of concurrent runs (serving.server.make_servicers).
    """

    def __init__(self, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 timeout_s: float = DEFAULT_BATCH_TIMEOUT_MICROS / 1e6, slots=None):
        if max_batch_size < 1 or timeout_s < 0:
            raise ValueError(f"max_batch_size {max_batch_size} must be >= 1 and timeout_s {timeout_s} >= 0")
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.slots = slots if slots is not None else contextlib.nullcontext()
        self._open: dict[Hashable, _Batch] = {}
        self._lock = threading.Lock()
        self.batch_sizes: collections.Counter = collections.Counter()     # size -> batches run

    def submit(self, key: Hashable, item: Any, run_batch: Callable[[list], list],
               run_one: Callable[[Any], Any]) -> Any:
        """Run `item` in a batch of items of the same `key`; return its result or raise its error.

        Args:
            key: items of equal keys can be run together (for a waveform: model, version and shape).
            item: this request's input.
            run_batch: items -> their results, in order (one model call); all items of a batch share
                their key and the `run_batch` and `run_one` of the batch's first item.
            run_one: item -> its result, used for each item when `run_batch` raises.
        """
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                batch = self._open[key] = _Batch()
            index = len(batch.items)
            batch.items.append(item)
            if len(batch.items) >= self.max_batch_size:
                self._close(key, batch)
        if leader:
            self._lead(key, batch, run_batch, run_one)
        else:
            batch.done.wait()
        if batch.errors[index] is not None:
            raise batch.errors[index]
        return batch.results[index]

    def _close(self, key: Hashable, batch: _Batch) -> None:
        """No more items join `batch` (call with the lock held)."""
        if self._open.get(key) is batch:
            del self._open[key]
        batch.full.set()

    def _lead(self, key: Hashable, batch: _Batch, run_batch, run_one) -> None:
        """Wait for the batch to fill or time out, then for a run slot; run it and wake its items.

        Should the leader be interrupted (KeyboardInterrupt, SystemExit) before its items have an
        outcome, it raises that and each other item of the batch gets a RuntimeError instead."""
        try:
            batch.full.wait(self.timeout_s)
            with self.slots:
                with self._lock:
                    self._close(key, batch)
                items = batch.items
                try:
                    results, errors = list(run_batch(items)), [None] * len(items)
                except Exception as err:  # noqa: BLE001  (each item is retried alone below)
                    logger.info("a batch of %d failed (%s); running its requests one by one",
                                len(items), first_line(err))
                    results, errors = [], []
                    for item in items:
                        try:
                            results.append(run_one(item))
                            errors.append(None)
                        except Exception as item_err:  # noqa: BLE001  (raised in that item's request)
                            results.append(None)
                            errors.append(item_err)
                batch.results, batch.errors = results, errors
                with self._lock:
                    self.batch_sizes[len(items)] += 1
        except BaseException as err:
            with self._lock:
                self._close(key, batch)
            if len(batch.errors) != len(batch.items):           # no outcome yet, and none will come
                batch.results = [None] * len(batch.items)
                batch.errors = [_interrupted(err) for _ in batch.items]
            raise
        finally:
            batch.done.set()
