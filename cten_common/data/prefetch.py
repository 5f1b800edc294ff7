"""Batches prepared ahead of the step that uses them, and the time a step waits.

``Prefetcher(iterable, depth)`` runs the iterable (a data loader) in a
background thread and keeps up to ``depth`` batches ready; reading frames and
the filterbank is numpy, OpenCV and FFmpeg work that releases the GIL, so it
overlaps the step.  Framework arrays are made by the consumer, in its own
thread.  ``waited_s`` is the time the consumer spent blocked on the next batch.
An error in the background thread (a bad file) is raised in the consumer, at
the batch where it happened.
"""
import queue
import threading
import time

_DONE = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class Prefetcher:
    def __init__(self, iterable, depth=2):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.waited_s = 0.0
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True,
                                        name="cten-prefetch")
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterable):
        try:
            for batch in iterable:
                if not self._put(batch):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(exc))
            return
        self._put(_DONE)

    def __iter__(self):
        return self

    def __next__(self):
        began = time.perf_counter()
        item = self._queue.get()
        self.waited_s += time.perf_counter() - began
        if item is _DONE:
            self._thread.join()
            raise StopIteration
        if isinstance(item, _Failure):
            self._thread.join()
            raise item.exc
        return item

    def close(self):
        """Stop the background thread (a consumer that leaves early)."""
        self._stop.set()
        self._thread.join(timeout=10)


class Timed:
    """Iterate ``iterable`` and add up the time spent waiting in ``next`` (``waited_s``):
    loaders whose own workers prefetch (worker processes) need no extra thread."""

    def __init__(self, iterable):
        self._it = iter(iterable)
        self.waited_s = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        began = time.perf_counter()
        try:
            return next(self._it)
        finally:
            self.waited_s += time.perf_counter() - began

    def close(self):
        pass


def batches(loader, num_workers, depth=2):
    """The loader's batches with ``waited_s``: through a Prefetcher thread when the
    loader has no worker processes of its own, else timed as they come."""
    return Prefetcher(loader, depth) if num_workers == 0 else Timed(loader)
