"""The artifact store: model files under ``DATA_DIR/artifacts/<model id>/<filename>`` (version
1, where files were before versions existed) and ``<model id>/v<N>/<filename>`` (version N).

Uploads stream into a temporary file in the staging folder (``.incoming``) while their sha256
and size are computed, and are moved into place only once complete; a file a crashed process
left there is swept once it is older than ``upload_staging_max_age``. Removal is retried;
``ModelService`` records it in the model's audit trail once the file is gone, and sweeps
removals that kept failing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:
    from uuid import UUID

log = logging.getLogger("modelledger.artifacts")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
STAGING = ".incoming"  # uploads in progress, beside the model folders (same file system)
LOCKS = ".locks"


class ArtifactTooLargeError(Exception):
    """The upload exceeded the configured maximum size."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the artifact is larger than the maximum of {limit} bytes")
        self.limit = limit


def safe_filename(name: str) -> str:
    """A file name without directories or unusual characters (never empty)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip("._")
    return base[:200] or "artifact"


@dataclass
class Upload:
    """An upload in progress: bytes go to a temporary file, hashed as they arrive."""

    store: ArtifactStore
    handle: IO[bytes]
    path: Path
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.store.max_bytes:
            raise ArtifactTooLargeError(self.store.max_bytes)
        self.digest.update(chunk)
        self.handle.write(chunk)
        # Every chunk reaches the file at once: its mtime tells the staging sweep it is alive.
        self.handle.flush()

    def finish(
        self, model_id: UUID, filename: str, version: int = 1
    ) -> tuple[str, int, str]:
        """Move the file into place; returns (filename, size in bytes, sha256 hex)."""
        name = safe_filename(filename)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        target = self.store.path_of(model_id, name, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path.replace(target)
        return name, self.size, self.digest.hexdigest()

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


class ArtifactStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path_of(self, model_id: UUID, filename: str, version: int = 1) -> Path:
        folder = self.root / str(model_id)
        return (folder if version == 1 else folder / f"v{version}") / safe_filename(filename)

    def version_lock(self, model_id: UUID) -> FileLock:
        """Held while a version of the model is numbered, stored and saved."""
        folder = self.root / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(folder / f"{model_id}.lock")

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def begin(self) -> Upload:
        self.staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        return Upload(self, os.fdopen(fd, "wb"), Path(name))

    def sweep_staging(self, max_age: float, *, now: float | None = None) -> int:
        """Remove staging files not written to for ``max_age`` seconds; returns how many.

        An upload in progress writes its file at least every read timeout, so only the
        files of uploads whose process died (or that nothing discarded) get this old.
        """
        cutoff = (time.time() if now is None else now) - max_age
        removed = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.staging) as entries:
            removed = sum(_remove_if_older(entry, cutoff) for entry in entries)
        if removed:
            log.info("staging files swept", extra={"removed": removed})
        return removed

    def discard_stored(self, model_id: UUID, filename: str, version: int = 1) -> None:
        """Remove a file that was moved into place for an upload whose save then failed."""
        path = self.path_of(model_id, filename, version)
        path.unlink(missing_ok=True)
        _rmdir_quietly(path.parent)

    def remove_file(
        self, model_id: UUID, filename: str, version: int = 1, *, attempts: int = 3,
        delay: float = 0.2,
    ) -> bool:
        """Delete the file (absent counts as deleted), retrying; returns whether it is gone."""
        path = self.path_of(model_id, filename, version)
        for attempt in range(1, attempts + 1):
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                log.warning("artifact removal failed (attempt %d/%d): %s: %s",
                            attempt, attempts, path, error)
                if attempt < attempts:
                    time.sleep(delay * attempt)
                continue
            _rmdir_quietly(path.parent)
            if version != 1:
                _rmdir_quietly(path.parent.parent)
            return True
        return False


def _remove_if_older(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= cutoff:
            return False
        Path(entry.path).unlink()
    except FileNotFoundError:  # discarded or swept by another process meanwhile
        return False
    except OSError as error:
        log.warning("staging file not removed: %s: %s", entry.path, error)
        return False
    return True


def _rmdir_quietly(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty or already gone
        directory.rmdir()
