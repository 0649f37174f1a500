"""Typed Hub ids (``REPAINT_ALLOW_HUB_IDS=1``): what a visitor's id may make the server download and hold.

- An id is resolved anonymously: the Space's own token (``HF_TOKEN``) would reach its owner's private and gated
  repositories.
- Each file's size is read from the Hub before it is downloaded; a model's files in all are at most
  ``Limits.hub_bytes_max``, and its image size at most ``Limits.hub_resolution_max``.
- Downloads go to a folder of their own in the Hub cache (:data:`HUB_IDS_DIR`), one at a time. After each, the
  folder is cut back to ``Limits.hub_cache_bytes_max``, the least recently used repositories deleted first. A load
  that fails keeps nothing.

How many of these models are held in memory is the model cache's bound (``Limits.hub_models_max``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import threading
from pathlib import Path

from .. import loading
from ..loading import ModelLoadError
from ..pipeline import Inpainter
from .files import oldest_over
from .limits import Limits

__all__ = ["HUB_IDS_DIR", "HubDownloads", "folder_bytes", "trim"]

log = logging.getLogger(__name__)

HUB_IDS_DIR = "repaint-hub-ids"  # in the Hub cache (HF_HUB_CACHE): typed ids' downloads, apart from the Space's own


class HubDownloads:
    """Loads typed Hub ids within ``limits``, into ``root`` (None: :data:`HUB_IDS_DIR` in the Hub cache, read at
    each load)."""

    def __init__(self, limits: Limits, root: Path | None = None):
        self.limits, self._root = limits, root
        self._lock = threading.Lock()  # one typed id's download at a time: the disk bound holds with one in flight

    @property
    def root(self) -> Path:
        from huggingface_hub import constants

        return Path(self._root) if self._root is not None else Path(constants.HF_HUB_CACHE) / HUB_IDS_DIR

    def folder(self, repo_id: str) -> Path:
        """Where ``repo_id``'s download is (huggingface_hub's cache layout)."""
        from huggingface_hub.file_download import repo_folder_name

        return self.root / repo_folder_name(repo_id=repo_id, repo_type="model")

    def used(self, repo_id: str) -> None:
        """Notes a use of ``repo_id``'s download (the model served from memory): :func:`trim` deletes it later."""
        with contextlib.suppress(OSError):  # not downloaded here, or deleted meanwhile
            os.utime(self.folder(repo_id))

    def load(self, repo_id: str) -> Inpainter:
        """``repo_id`` loaded anonymously within the limits, or a ModelLoadError that says which limit or why."""
        root, limits, folder = self.root, self.limits, self.folder(repo_id)
        with self._lock:
            try:
                inp = loading.load_hub(repo_id, cache_dir=root, token=False, bytes_max=limits.hub_bytes_max)
                if inp.resolution > limits.hub_resolution_max:
                    raise ModelLoadError(
                        f"model {repo_id!r} is {inp.resolution}x{inp.resolution}; at most "
                        f"{limits.hub_resolution_max}x{limits.hub_resolution_max} is served here"
                    )
            except BaseException:
                _delete(root, folder)
                raise
            self.used(repo_id)
            trim(root, limits.hub_cache_bytes_max)
            return inp


def folder_bytes(folder: Path) -> int:
    """The bytes of the files in ``folder`` and below, each counted once (links not followed: a Hub cache's
    snapshots link to its blobs)."""
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(path, name))
            except OSError:  # deleted meanwhile
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def trim(root: Path, bytes_max: int) -> list[str]:
    """Deletes the downloaded repositories in ``root``, least recently used first (a folder's time, set at each
    use), while they take more than ``bytes_max`` in all: the names deleted."""
    if not root.is_dir():
        return []
    folders = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("models--")]
    deleted = []
    for d in oldest_over({d: (folder_bytes(d), _used(d)) for d in folders}, bytes_max):
        _delete(root, d)
        deleted.append(d.name)
    if deleted:
        log.info("typed Hub ids' downloads: deleted %s (least recently used)", ", ".join(deleted))
    return deleted


def _used(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def _delete(root: Path, folder: Path) -> None:
    """A repository's download and its lock files."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(root / ".locks" / folder.name, ignore_errors=True)
