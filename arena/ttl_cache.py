"""The one per-process cache: bounded, each entry valid for a few seconds.

Pages and the voting path remember small things they read often (a user's groups, a study's
index, the sampler's inputs) for seconds, so that a change made elsewhere applies within that
time everywhere. Every such cache is a :class:`TTLCache`; :func:`caches_clear` empties them all
(tests call it between tests, whose rolled-back ids may be handed out again).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_CACHES: weakref.WeakSet[TTLCache] = weakref.WeakSet()
_MISSING = object()


class TTLCache:
    """At most `maxsize` entries (the least recently stored goes first), each kept `ttl` seconds."""

    def __init__(self, *, ttl: float, maxsize: int = 1024):
        if ttl <= 0 or maxsize < 1:
            raise ValueError("ttl must be positive and maxsize at least 1")
        self.ttl = ttl
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Hashable, threading.Event] = {}
        _CACHES.add(self)

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or time.monotonic() - hit[0] >= self.ttl:
                return default
            return hit[1]

    def set(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = (time.monotonic(), value)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_set(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value, or `make()` stored and returned (two threads may both make it)."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = make()
            self.set(key, value)
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], Any], *, wait: float = 30.0) -> Any:
        """The cached value, or `make()` stored and returned, made by one thread at a time per key.

        While one thread makes a value whose entry has expired, the others get the expired value
        (a few seconds old, as any cached value may be) instead of all making it at once; with no
        value at all they wait for the maker (at most `wait` seconds, then make their own).
        """
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            other = self._making.get(key)
            if other is not None and hit is not None:
                return hit[1]
            if other is None:
                mine = self._making[key] = threading.Event()
        if other is not None:
            other.wait(wait)
            value = self.get(key, _MISSING)
            return make() if value is _MISSING else value
        try:
            value = make()
            self.set(key, value)
            return value
        finally:
            with self._lock:
                self._making.pop(key, None)
            mine.set()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def caches_clear() -> None:
    """Empty every cache of this process."""
    for cache in list(_CACHES):
        cache.clear()
