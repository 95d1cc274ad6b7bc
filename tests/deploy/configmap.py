"""A ConfigMap volume as the kubelet writes it, for tests of ``--watch`` on Kubernetes.

The kubelet's atomic writer puts the files in a timestamped folder, points ``..data`` at
it and each visible name at ``..data/NAME``; an update writes a new timestamped folder,
points ``..data_tmp`` at it, renames that over ``..data`` (the one atomic step) and
removes the old folder. The visible file never changes in place: its path resolves to a
new file."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path


class ConfigMapVolume:
    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self._serial = itertools.count(1)
        root.mkdir(parents=True, exist_ok=True)
        first = self._write_folder(files)
        os.symlink(first, root / "..data")
        for name in files:
            os.symlink(Path("..data") / name, root / name)

    def path(self, name: str) -> Path:
        return self.root / name

    def _write_folder(self, files: dict[str, str]) -> str:
        folder = f"..2026_12_06_07_00_00.{next(self._serial):09d}"
        (self.root / folder).mkdir()
        for name, text in files.items():
            (self.root / folder / name).write_text(text)
        return folder

    def update(self, files: dict[str, str], mtime_ns: int | None = None) -> None:
        """Swap in new contents the kubelet's way (``mtime_ns``: give the new files the old
        files' time, as a fast update within one clock tick would)."""
        old = os.readlink(self.root / "..data")
        new = self._write_folder(files)
        if mtime_ns is not None:
            for name in files:
                os.utime(self.root / new / name, ns=(mtime_ns, mtime_ns))
        os.symlink(new, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        shutil.rmtree(self.root / old)
