"""The artifact store: model files under ``DATA_DIR/artifacts/<model id>/<filename>``.

Uploads stream into a temporary file while their sha256 and size are computed, and are moved
into place only once complete. Removal is retried; ``ModelService`` records it in the model's
audit trail once the file is gone, and sweeps removals that kept failing.
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

if TYPE_CHECKING:
    from uuid import UUID

log = logging.getLogger("modelledger.artifacts")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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

    def finish(self, model_id: UUID, filename: str) -> tuple[str, int, str]:
        """Move the file into place; returns (filename, size in bytes, sha256 hex)."""
        name = safe_filename(filename)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        target = self.store.path_of(model_id, name)
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

    def path_of(self, model_id: UUID, filename: str) -> Path:
        return self.root / str(model_id) / safe_filename(filename)

    def begin(self) -> Upload:
        incoming = self.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=incoming, prefix="upload-")
        return Upload(self, os.fdopen(fd, "wb"), Path(name))

    def discard_stored(self, model_id: UUID, filename: str) -> None:
        """Remove a file that was moved into place for a registration that then failed."""
        path = self.path_of(model_id, filename)
        path.unlink(missing_ok=True)
        _rmdir_quietly(path.parent)

    def remove_file(
        self, model_id: UUID, filename: str, *, attempts: int = 3, delay: float = 0.2
    ) -> bool:
        """Delete the file (absent counts as deleted), retrying; returns whether it is gone."""
        path = self.path_of(model_id, filename)
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
            return True
        return False


def _rmdir_quietly(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty or already gone
        directory.rmdir()
