"""Results computed once per key, for the runs computed in the server's own threads (Compare, Lesson)."""
from __future__ import annotations

import threading
from collections import OrderedDict


class Memo:
    """Results computed once per key, for the in-process runs (Compare, Lesson): a request whose result is
    being computed waits for it, a later one gets it from a bounded cache. An exception is not kept."""

    def __init__(self, size: int = 64):
        self.size, self._lock = size, threading.Lock()
        self._done: OrderedDict = OrderedDict()
        self._running: dict = {}
        self.computed = 0

    def get(self, key, compute):
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            event = self._running.get(key)
            owner = event is None
            if owner:
                event = self._running[key] = threading.Event()
                self.computed += 1
        if not owner:
            event.wait()
            with self._lock:
                if key in self._done:
                    return self._done[key]
            return self.get(key, compute)        # the computation failed: try it ourselves
        try:
            value = compute()
            with self._lock:
                self._done[key] = value
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._running[key]
            event.set()

