"""Checking and copying a registry: ``Registry.verify`` (optionally fixing) and ``Registry.backup``.

Nothing here ever deletes a file: ``fix`` moves what is wrong into ``<root>/quarantine/<time>/``
(same relative path), where the user can inspect it or delete it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Connection, select

from .blobs import BLOB_NAME, MISSING, TEMP_NAME, BlobStore
from .catalog import Catalog
from .errors import IntegrityError, RegistryError
from .records import format_ref, kind_label
from .schema import prompts

# A temp file whose writer is alive is a write in progress, unless it is this old.
_TEMP_GRACE_S = 3600
# Problems that moving a file aside resolves; the others need a backup or a retrain.
_RESOLVED_BY_MOVING = ("unreferenced", "temp")


@dataclass(frozen=True)
class Finding:
    """One thing wrong: ``problem`` is database, missing, corrupt, unreferenced or temp."""

    problem: str
    path: str  # relative to the registry root
    detail: str
    moved_to: str | None = None  # relative to the registry root, when ``fix`` moved the file

    @property
    def resolved(self) -> bool:
        return self.moved_to is not None and self.problem in _RESOLVED_BY_MOVING


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` checked and found; ``ok`` when nothing is (still) wrong."""

    root: Path
    prompts: int  # catalog rows checked
    blobs: int  # distinct blob files the rows reference
    findings: tuple[Finding, ...]
    quarantine: Path | None  # where ``fix`` moved files, if it moved any

    @property
    def ok(self) -> bool:
        return all(finding.resolved for finding in self.findings)

    @property
    def remaining(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if not finding.resolved)


@dataclass(frozen=True)
class BackupReport:
    source: Path
    destination: Path
    prompts: int
    blobs: int
    bytes: int
    verify: VerifyReport  # of the copy


class _Quarantine:
    """``<root>/quarantine/<UTC time>/``, created on the first move."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder: Path | None = None

    def move(self, path: Path) -> str:
        if self.folder is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            folder, n = self.root / "quarantine" / stamp, 1
            while folder.exists():
                folder, n = self.root / "quarantine" / f"{stamp}-{n}", n + 1
            self.folder = folder
        relative = path.relative_to(self.root)
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return str(target.relative_to(self.root))


def verify(root: Path, catalog: Catalog, blobs: BlobStore, fix: bool = False) -> VerifyReport:
    """Check the database, every referenced blob, and the blob folder for files nothing uses."""
    with catalog.transaction(write=False) as conn:
        findings = [Finding("database", catalog.path.name, line) for line in _database_problems(conn)]
        rows = conn.execute(select(prompts.c.kind, prompts.c.name, prompts.c.version, prompts.c.sha256,
                                   prompts.c.size)).all()
    users: dict[tuple[str, int], list[str]] = defaultdict(list)
    for row in rows:
        users[(row.sha256, row.size)].append(f"{kind_label(row.kind)} {format_ref(row.name, row.version)}")
    # Hashing happens without the lock; anything found is re-checked under it before acting.
    damaged = {key for key in users if blobs.problem(*key) is not None}
    quarantine = _Quarantine(root)
    # Fixing holds the write lock, so no register can commit a row for a blob while it is moved.
    with catalog.transaction(write=fix) as conn:
        for sha, size in sorted(damaged):
            findings += _damaged_blob(root, blobs, sha, size, users[(sha, size)], quarantine if fix else None)
        findings += _stray_files(root, blobs, _referenced(conn), quarantine if fix else None)
    return VerifyReport(root=root, prompts=len(rows), blobs=len(users), findings=tuple(findings),
                        quarantine=quarantine.folder)


def _database_problems(conn: Connection) -> list[str]:
    lines = [line for line in conn.exec_driver_sql("PRAGMA integrity_check").scalars() if line != "ok"]
    for table, rowid, parent, _ in conn.exec_driver_sql("PRAGMA foreign_key_check"):
        lines.append(f"{table} row {rowid} points at a missing {parent} row")
    return lines


def _referenced(conn: Connection) -> set[str]:
    return set(conn.scalars(select(prompts.c.sha256).distinct()))


def _damaged_blob(root: Path, blobs: BlobStore, sha: str, size: int, labels: list[str],
                  quarantine: _Quarantine | None) -> list[Finding]:
    reason = blobs.problem(sha, size)  # again: a concurrent register may have repaired it
    if reason is None:
        return []
    path = blobs.path(sha)
    detail = f"{', '.join(labels)}: {reason}"
    if reason == MISSING:
        return [Finding("missing", str(path.relative_to(root)), detail)]
    moved = quarantine.move(path) if quarantine is not None else None
    return [Finding("corrupt", str(path.relative_to(root)), detail, moved)]


def _stray_files(root: Path, blobs: BlobStore, referenced: set[str],
                 quarantine: _Quarantine | None) -> list[Finding]:
    findings = []
    for path in sorted(p for p in blobs.root.rglob("*") if p.is_file() or p.is_symlink()):
        temp = TEMP_NAME.match(path.name)
        if temp is not None:
            if _in_progress(path, int(temp["pid"])):
                continue
            problem, detail = "temp", "temporary file left by an interrupted write"
        else:
            blob = BLOB_NAME.match(path.name)
            if blob is not None and path.parent.name == blob["sha"][:2] and blob["sha"] in referenced:
                continue
            problem = "unreferenced"
            detail = "no catalog row uses this blob" if blob else "not a registry file"
        moved = quarantine.move(path) if quarantine is not None else None
        findings.append(Finding(problem, str(path.relative_to(root)), detail, moved))
    return findings


def _in_progress(path: Path, pid: int) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True  # renamed into place or removed by its writer meanwhile
    if pid == os.getpid() or age > _TEMP_GRACE_S:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def backup(root: Path, catalog: Catalog, blobs: BlobStore, destination: Path) -> BackupReport:
    """Copy the catalog with SQLite's online backup (a consistent snapshot while others write),
    then the blobs that snapshot references, then verify the copy."""
    destination = Path(destination).expanduser().resolve()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise RegistryError(f"backup destination {destination} exists and is not empty; choose a new or empty folder")
    if destination == root or root in destination.parents:
        raise RegistryError(f"backup destination {destination} is inside registry {root}; choose a folder outside it")
    destination.mkdir(parents=True, exist_ok=True)
    copy_path = destination / catalog.path.name
    with closing(sqlite3.connect(catalog.path, timeout=catalog.busy_timeout)) as source, \
            closing(sqlite3.connect(copy_path)) as target:
        try:
            source.backup(target)
        except sqlite3.Error as error:
            raise RegistryError(f"backup of registry {root} failed: {error}; retry") from None
        rows = target.execute("SELECT sha256, size, COUNT(*) FROM prompts GROUP BY sha256, size").fetchall()
    copied = BlobStore(destination / "blobs")
    total = 0
    for sha, size, _ in rows:
        try:
            payload = blobs.read(sha, size, f"blob {sha}")
        except IntegrityError:
            continue  # the copy's verify names the prompts whose file could not be copied
        copied.write(payload)
        total += size
    copy_catalog = Catalog(copy_path, catalog.busy_timeout, catalog.migrations)
    try:
        report = verify(destination, copy_catalog, copied)
    finally:
        copy_catalog.close()
    return BackupReport(source=root, destination=destination, prompts=sum(n for *_, n in rows),
                        blobs=len(rows), bytes=total, verify=report)
