"""Windows of numpy columns parked on disk between passes, so memory holds one window at a time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

Cols = dict[str, np.ndarray]


class Spool:
    """Per table, a sequence of windows (`.npz` files, uncompressed: written once, read twice)."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.starts: dict[str, list[int]] = {}  # global row of each window's first row

    def append(self, table: str, cols: Cols) -> None:
        starts = self.starts.setdefault(table, [0])
        (self.folder / table).mkdir(exist_ok=True)
        path = self.folder / table / f"{len(starts) - 1:05d}.npz"
        np.savez(path, allow_pickle=False, **cols)
        starts.append(starts[-1] + len(next(iter(cols.values()))))

    def rows(self, table: str) -> int:
        return self.starts.get(table, [0])[-1]

    def load(self, table: str, window: int) -> Cols:
        with np.load(self.folder / table / f"{window:05d}.npz") as npz:
            return {key: npz[key] for key in npz.files}

    def windows(self, table: str) -> Iterator[tuple[int, Cols]]:
        """(first global row, columns) of each window in order."""
        starts = self.starts.get(table, [0])
        for w in range(len(starts) - 1):
            yield starts[w], self.load(table, w)

    def gather(self, table: str, rows: np.ndarray) -> Cols:
        """Copies of the given sorted global rows, reading only the windows that hold some."""
        starts = np.array(self.starts[table])
        pieces: list[Cols] = []
        for w in np.unique(np.searchsorted(starts, rows, side="right") - 1):
            lo, hi = np.searchsorted(rows, starts[w : w + 2])
            cols = self.load(table, int(w))
            pieces.append({k: v[rows[lo:hi] - starts[w]] for k, v in cols.items()})
        if not pieces:  # no rows: keep the dtypes of the first window
            return {k: v[:0] for k, v in self.load(table, 0).items()}
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
