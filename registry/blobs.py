"""Content-addressed blob files: ``blobs/<sha[:2]>/<sha>.safetensors``.

A blob is written whole under a temporary name and renamed into place, so a reader sees either
no file or the complete file, never a torn one, even if the writer is killed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import IntegrityError

_RESTORE = "restore it from a backup or retrain"


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / f"{sha}.safetensors"

    def write(self, payload: bytes) -> tuple[str, int]:
        """Store ``payload`` under its sha256 (skipped when an intact copy exists); returns (sha, size)."""
        sha = sha256_of(payload)
        if not self._intact(sha, payload):
            self._write_atomically(sha, payload)
        return sha, len(payload)

    def ensure(self, sha: str, payload: bytes) -> None:
        """Cheap re-check under the catalog write lock: a concurrent removal may have collected the blob."""
        path = self.path(sha)
        if not path.is_file() or path.stat().st_size != len(payload):
            self._write_atomically(sha, payload)

    def read(self, sha: str, size: int, label: str) -> bytes:
        path = self.path(sha)
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"{label}: file {path} is missing; {_RESTORE}") from None
        except OSError as error:
            raise IntegrityError(f"{label}: file {path} cannot be read ({error.strerror}); {_RESTORE}") from None
        if len(payload) != size or sha256_of(payload) != sha:
            raise IntegrityError(f"{label}: file {path} sha256 mismatch (file is corrupt); {_RESTORE}")
        return payload

    def delete(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def _intact(self, sha: str, payload: bytes) -> bool:
        path = self.path(sha)
        try:
            return path.stat().st_size == len(payload) and sha256_of(path.read_bytes()) == sha
        except FileNotFoundError:
            return False

    def _write_atomically(self, sha: str, payload: bytes) -> None:
        directory = self.path(sha).parent
        directory.mkdir(parents=True, exist_ok=True)
        # mkstemp's O_EXCL name is unique per process and call, so concurrent writers of the same
        # content never share a temp file; the last rename wins with identical bytes.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{sha[:16]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path(sha))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened for this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
