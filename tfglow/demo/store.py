"""LatentStore: encoded uploads kept in memory by unguessable id, so edit requests send an id
rather than the latents. Bounded (least recently used entries go first) and thread-safe;
entries are never changed after they are put, so concurrent requests cannot mix them up."""
import collections
import dataclasses
import secrets
import threading

import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
    """One encoded upload: its (cropped) image, latents (list of [h, w, c]) and label."""
    image: np.ndarray
    latents: tuple
    y: int = 0


class LatentStore:
    def __init__(self, capacity=256):
        if capacity < 1:
            raise ValueError(f"LatentStore capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, entry):
        """Stores entry; returns its new id."""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = entry
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key):
        """The entry for key, or None (unknown or evicted)."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def __len__(self):
        with self._lock:
            return len(self._items)
