"""A least-recently-used cache bounded in bytes, so that long answers cannot grow it without limit.

A cache capped by its number of entries holds as many 200,000-character answers as 3-character ones;
:class:`ByteLRU` counts what it holds instead::

    >>> cache = ByteLRU(max_bytes=65536)
    >>> cache.put("1/2", "0.5")
    >>> cache.get("1/2"), cache.get("missing")
    ('0.5', None)
    >>> cache.put("x" * 10_000, "too big")    # over a 16th of the cap: not kept
    >>> len(cache), cache.nbytes <= cache.max_bytes
    (1, True)
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["ByteLRU", "ENTRY_OVERHEAD"]

#: Bytes charged per entry on top of its key and value: the ordered dict's slot and link node and the
#: (value, size) record (about 150 bytes measured with tracemalloc on CPython 3.11).
ENTRY_OVERHEAD = 160


def _size(item: object) -> int:
    """``sys.getsizeof`` of an object, and of each item of a tuple (tuple keys hold the strings)."""
    if isinstance(item, tuple):
        return sys.getsizeof(item) + sum(_size(part) for part in item)
    return sys.getsizeof(item)


class ByteLRU:
    """A thread-safe mapping that drops its least recently used entries once it holds over ``max_bytes``.

    An entry costs ``sys.getsizeof`` of its key (of each item of a tuple key) and of its value, plus
    :data:`ENTRY_OVERHEAD`; :attr:`nbytes` is the sum, kept at most ``max_bytes`` after every
    :meth:`put`. An entry costing more than ``max_bytes // 16`` is not kept: one huge item would
    otherwise evict everything else and be evicted in turn. None cannot be stored (it means a miss).
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        # A fork while another thread holds the lock would leave the child's copy locked for ever.
        alive = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (cache := alive()) is not None and cache._new_lock())

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: object) -> None:
        """Store ``value`` under ``key``, then drop least recently used entries down to ``max_bytes``."""
        cost = _size(key) + _size(value) + ENTRY_OVERHEAD
        if cost > self.max_bytes // 16:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.nbytes -= previous[1]
            self._entries[key] = (value, cost)
            self.nbytes += cost
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)
