"""Content-addressed blob files: ``blobs/<sha[:2]>/<sha>.safetensors``.

A blob is written whole under a temporary name and renamed into place, so a reader sees either
no file or the complete file, never a torn one, even if the writer is killed. Temporary names
carry the writer's pid (``.<sha16>-<pid>-<random>.tmp``) so ``verify`` can tell a live writer's
file from one left by a killed process.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import IntegrityError, RegistryError

_RESTORE = "restore it from a backup or retrain"
BLOB_NAME = re.compile(r"^(?P<sha>[0-9a-f]{64})\.safetensors$")
TEMP_NAME = re.compile(r"^\.[0-9a-f]{16}-(?P<pid>\d+)-.*\.tmp$")
MISSING = "file is missing"


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def damage(payload: bytes, sha: str, size: int) -> str | None:
    """Why ``payload`` is not the blob (sha, size), or None when it is."""
    if len(payload) == 0:
        return f"empty file (expected {size} bytes)"
    if len(payload) != size:
        return f"wrong size: {len(payload)} bytes, expected {size} (truncated or replaced)"
    if sha256_of(payload) != sha:
        return "sha256 mismatch (file is corrupt)"
    return None


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / f"{sha}.safetensors"

    def write(self, payload: bytes) -> tuple[str, int]:
        """Store ``payload`` under its sha256 (skipped when an intact copy exists); returns (sha, size).

        OS failures (disk full, permissions) become one-line ``RegistryError``s; nothing is left
        behind but a temp file a killed process could not remove.
        """
        sha = sha256_of(payload)
        try:
            if self.problem(sha, len(payload)) is not None:
                self._write_atomically(sha, payload)
        except OSError as error:
            raise RegistryError(f"cannot write blob {self.path(sha)}: {error.strerror or error}; "
                                "check free space and permissions") from None
        return sha, len(payload)

    def read(self, sha: str, size: int, label: str) -> bytes:
        """The verified bytes; never parses them, so a planted pickle or torn file is only ever hashed."""
        path = self.path(sha)
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"{label}: file {path} is missing; {_RESTORE}") from None
        except OSError as error:
            raise IntegrityError(f"{label}: file {path} cannot be read ({error.strerror}); {_RESTORE}") from None
        reason = damage(payload, sha, size)
        if reason is not None:
            raise IntegrityError(f"{label}: file {path}: {reason}; {_RESTORE}")
        return payload

    def problem(self, sha: str, size: int) -> str | None:
        """Why the stored blob is not intact (``MISSING``, a damage reason), or None."""
        try:
            return damage(self.path(sha).read_bytes(), sha, size)
        except FileNotFoundError:
            return MISSING
        except OSError as error:
            return f"unreadable ({error.strerror})"

    def delete(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def _write_atomically(self, sha: str, payload: bytes) -> None:
        directory = self.path(sha).parent
        directory.mkdir(parents=True, exist_ok=True)
        # mkstemp's O_EXCL name is unique per process and call, so concurrent writers of the same
        # content never share a temp file; the last rename wins with identical bytes.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{sha[:16]}-{os.getpid()}-", suffix=".tmp")
        try:
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
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
