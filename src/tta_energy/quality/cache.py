"""On-disk embedding cache keyed by content, never by path.

An entry is ``<root>/<model id>/<kind>/<key[:2]>/<key>.npy`` (float32), where the model id carries a hash of
the checkpoint's files and the key hashes the input (audio file bytes + preparation settings, or caption text)
and a cache format version. Entries are written atomically (temporary file + ``os.replace``) and only after
the input has been read and embedded without error, so bad input never leaves anything behind. A stale or
unreadable entry is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from tta_energy.fileio import atomic_path

CACHE_VERSION = "1"
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tta-energy" / "embeddings"
)


class EmbeddingCache:
    """Float32 embedding arrays on disk; ``root=None`` disables caching."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*parts: str) -> str:
        h = hashlib.sha256(CACHE_VERSION.encode())
        for part in parts:
            h.update(b"\0" + part.encode())
        return h.hexdigest()

    def path(self, model_id: str, kind: str, key: str) -> Path:
        assert self.root is not None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
        return self.root / safe / kind / key[:2] / f"{key}.npy"

    def load(self, model_id: str, kind: str, key: str, dim: int) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self.path(model_id, kind, key)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        if (
            arr.dtype != np.float32
            or arr.ndim != 2
            or arr.shape[1] != dim
            or len(arr) == 0
            or not np.isfinite(arr).all()
        ):
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def store(self, model_id: str, kind: str, key: str, array: np.ndarray) -> None:
        if self.root is None:
            return
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim != 2 or len(array) == 0 or not np.isfinite(array).all():
            raise ValueError("refusing to cache an empty or non-finite embedding")
        path = self.path(model_id, kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npy.tmp") as tmp, open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
