"""The prompt registry: a SQLite catalog of records pointing at content-addressed safetensors blobs.

The caller serialises tensors itself and hands over bytes, so this package never imports torch.
Writes follow the mlflow split: blob first (temp file, fsync, rename), then the catalog row; a
row therefore never points at a blob that was not completely written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import maintenance
from .blobs import BlobStore, sha256_of
from .catalog import Catalog
from .errors import IntegrityError, InUseError, NotFoundError, RegistryError
from .maintenance import BackupReport, VerifyReport
from .migrations import MIGRATIONS, Migration
from .records import KINDS, EvaluationRecord, PromptRecord, check_kind, check_name, format_ref, kind_label, parse_ref
from .schema import cache, evaluations, prompts

# Fingerprint entries that identify the backbone's weights; differing values mean a prompt
# would be mixed into a model it was never trained for.
_IDENTITY_KEYS = ("config_sha256", "embedding_sha256")
_LISTED = 20


class Registry:
    """Registered prompts under ``root``: ``catalog.sqlite`` plus ``blobs/<sha[:2]>/<sha>.safetensors``."""

    def __init__(self, root: str | os.PathLike, *, busy_timeout: float = 10.0,
                 migrations: Sequence[Migration] = MIGRATIONS, read_only: bool = False, create: bool = True) -> None:
        """Open (creating or upgrading) the registry; ``migrations`` is for tests of the upgrade path.

        ``read_only`` opens an existing registry for reading only (``attemptctl serve``): nothing is
        created or upgraded, SQLite opens the catalog read-only, and every write is refused. ``create=False``
        (a command that only reads prompts) refuses a folder without a registry instead of creating one there,
        so that a mistyped path is an error, not an empty registry.
        """
        self.root = Path(root).expanduser().resolve()
        if (read_only or not create) and not (self.root / "catalog.sqlite").is_file():
            raise RegistryError(f"no registry at {self.root}; check --registry (or $ATTEMPTCTL_REGISTRY), or start one "
                                "with `attemptctl source pull` or `attemptctl source train TASK`")
        try:
            if not read_only:
                self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RegistryError(f"cannot create registry {self.root}: {error.strerror}") from None
        self._blobs = BlobStore(self.root / "blobs")
        self._catalog = Catalog(self.root / "catalog.sqlite", busy_timeout, migrations, read_only=read_only)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the engine; the registry stays usable and reconnects on the next call."""
        self._catalog.close()

    # -- prompts -----------------------------------------------------------------------------

    def register(self, *, kind: str, name: str, task: str, backbone: str, fingerprint: Mapping[str, Any],
                 d: int, m: int, payload: bytes, sources: Iterable[str] = (), attention: str | None = None,
                 variant: str = "", parent: str | None = None, config: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None) -> PromptRecord:
        """Store ``payload`` and add it as the next version of (kind, name).

        ``sources``, ``attention`` and ``parent`` may be given as ``name`` (latest) or ``name@V``;
        they are stored as exact ``name@V`` refs so a record keeps meaning the same thing.
        """
        row = _new_row(kind, name, task, backbone, fingerprint, d, m, variant, config, metrics)
        payload = _as_bytes(payload, kind, name)
        links = dict(sources=tuple(sources), attention=attention, parent=parent)
        # Checked before any byte hits the disk, so a bad reference leaves nothing behind.
        with self._catalog.transaction(write=False) as conn:
            self._resolve_links(conn, row, **links)
        sha = None
        try:
            with self._catalog.transaction(write=True) as conn:
                # Again under the write lock: a concurrent remove may have taken a source away.
                row.update(self._resolve_links(conn, row, **links))
                # The blob is made durable under the lock and before the row: a busy registry leaves
                # no file, remove() cannot collect the blob in between, and a kill leaves at most an
                # unreferenced blob or temp file, which verify reports and fix moves aside.
                sha, size = self._blobs.write(payload)
                row.update(sha256=sha, size=size, version=1 + conn.scalar(
                    select(func.coalesce(func.max(prompts.c.version), 0))
                    .where(prompts.c.kind == kind, prompts.c.name == row["name"])))
                new_id = conn.execute(insert(prompts).values(**row)).inserted_primary_key[0]
                return _prompt_record(conn.execute(select(prompts).where(prompts.c.id == new_id)).one())
        except RegistryError:
            if sha is not None:
                self._collect_quietly({sha})  # e.g. the commit failed: the blob would be garbage
            raise

    def verify(self, fix: bool = False) -> VerifyReport:
        """Check the catalog (``PRAGMA integrity_check``), every row's blob and stray files.

        ``fix`` moves corrupt, unreferenced and temp files into ``quarantine/<time>/``; it never deletes.
        """
        return maintenance.verify(self.root, self._catalog, self._blobs, fix=fix)

    def backup(self, destination: str | os.PathLike) -> BackupReport:
        """A consistent copy into a new or empty folder, safe while others write; verified."""
        return maintenance.backup(self.root, self._catalog, self._blobs, Path(destination))

    def get(self, kind: str, ref: str) -> PromptRecord:
        """The record ``name@V``, or the latest version of ``name``."""
        with self._catalog.transaction(write=False) as conn:
            return _prompt_record(self._resolve(conn, kind, ref))

    def find(self, ref: str, kinds: Iterable[str] = ("target", "source")) -> PromptRecord:
        """The record of the first kind in ``kinds`` that has ``ref``."""
        kinds = tuple(check_kind(kind) for kind in kinds)
        name, version = parse_ref(ref)
        with self._catalog.transaction(write=False) as conn:
            for kind in kinds:
                row = _select_version(conn, kind, name, version)
                if row is not None:
                    return _prompt_record(row)
            available = "; ".join(f"{kind}: {_available(conn, kind, name)}" for kind in kinds)
        wanted = " or ".join(kind_label(kind) for kind in kinds)
        raise NotFoundError(f"no {wanted} {ref!r} in registry {self.root}; available: {available}")

    def list(self, kind: str | None = None, name: str | None = None,
             latest_only: bool = False) -> list[PromptRecord]:
        """Records ordered by kind (in ``KINDS`` order), name and version."""
        query = select(prompts)
        if kind is not None:
            query = query.where(prompts.c.kind == check_kind(kind))
        if name is not None:
            query = query.where(prompts.c.name == name)
        if latest_only:
            latest = (select(prompts.c.kind, prompts.c.name, func.max(prompts.c.version).label("version"))
                      .group_by(prompts.c.kind, prompts.c.name).subquery())
            query = query.join(latest, (prompts.c.kind == latest.c.kind) & (prompts.c.name == latest.c.name)
                               & (prompts.c.version == latest.c.version))
        with self._catalog.transaction(write=False) as conn:
            records = [_prompt_record(row) for row in conn.execute(query)]
        return sorted(records, key=lambda r: (KINDS.index(r.kind), r.name, r.version))

    def load_payload(self, record: PromptRecord) -> bytes:
        """The blob's bytes, verified against the recorded sha256 and size."""
        return self._blobs.read(record.sha256, record.size, record.label)

    def remove(self, kind: str, ref: str, force: bool = False) -> list[PromptRecord]:
        """Remove ``name@V``, or every version of ``name``; returns the removed records.

        Sources and attention modules that targets still use are kept unless ``force``: a target
        without its sources cannot be evaluated. Blobs go once no remaining row uses them.
        """
        name, version = parse_ref(ref)
        with self._catalog.transaction(write=True) as conn:
            if version is None:
                rows = conn.execute(select(prompts).where(prompts.c.kind == check_kind(kind), prompts.c.name == name)
                                    .order_by(prompts.c.version)).all()
            else:
                rows = [self._resolve(conn, kind, ref)]
            if not rows:
                raise self._not_found(conn, kind, ref)
            removed = [_prompt_record(row) for row in rows]
            users = _dependants(conn, kind, {r.ref for r in removed})
            if users and not force:
                raise InUseError(
                    f"{kind_label(kind)} {', '.join(r.ref for r in removed)} is used by "
                    f"{', '.join(u.label for u in users)}; remove those first or force the removal")
            ids = [row.id for row in rows]
            conn.execute(delete(evaluations).where(evaluations.c.prompt_id.in_(ids)))
            conn.execute(delete(prompts).where(prompts.c.id.in_(ids)))
            # Blobs are deleted while the write lock is held; register writes its blob under the
            # same lock, so no new row can start using a blob between the check and the unlink.
            self._collect(conn, {r.sha256 for r in removed})
        return removed

    def extend_fingerprint(self, kind: str, ref: str, entries: Mapping[str, Any]) -> PromptRecord:
        """Add ``entries`` to the fingerprint of one version (a key that newer fingerprints cover); returns
        the updated record.

        A fingerprint is completed, never changed: an entry it already has must keep its value, so no
        prompt can be re-labelled for another backbone. One UPDATE in one write transaction.
        """
        with self._catalog.transaction(write=True) as conn:
            row = self._resolve(conn, kind, ref)
            label = f"{kind_label(row.kind)} {format_ref(row.name, row.version)}"
            entries = _json_dict(entries, "fingerprint", label)
            changed = sorted(key for key, value in entries.items()
                             if key in row.fingerprint and row.fingerprint[key] != value)
            if changed:
                raise RegistryError(f"{label}: its fingerprint already records {', '.join(changed)} with another "
                                    "value; a fingerprint can be completed, not changed (retrain the prompt instead)")
            conn.execute(update(prompts).where(prompts.c.id == row.id)
                         .values(fingerprint={**row.fingerprint, **entries}))
            return _prompt_record(conn.execute(select(prompts).where(prompts.c.id == row.id)).one())

    def dependants(self, kind: str, ref: str) -> list[PromptRecord]:
        """Targets that use this version: as a source, as their attention module, or as parent (targets)."""
        with self._catalog.transaction(write=False) as conn:
            row = self._resolve(conn, kind, ref)
            return _dependants(conn, kind, {format_ref(row.name, row.version)})

    def default_backbone(self) -> str | None:
        """Backbone of the most recently registered record, so commands can omit ``--backbone``."""
        with self._catalog.transaction(write=False) as conn:
            return conn.scalar(select(prompts.c.backbone).order_by(prompts.c.id.desc()).limit(1))

    # -- evaluations --------------------------------------------------------------------------

    def add_evaluation(self, kind: str, ref: str, split: str, metrics: Mapping[str, float], examples: int,
                       seconds: float) -> EvaluationRecord:
        if not isinstance(split, str) or not split:
            raise RegistryError(f"evaluation of {kind_label(kind)} {ref}: split must be a name such as 'dev' or 'test'")
        values = dict(split=split, metrics=dict(metrics), examples=int(examples), seconds=float(seconds),
                      created_at=datetime.now(timezone.utc))
        with self._catalog.transaction(write=True) as conn:
            row = self._resolve(conn, kind, ref)
            new_id = conn.execute(insert(evaluations).values(prompt_id=row.id, **values)).inserted_primary_key[0]
            return _evaluation_record(row, conn.execute(select(evaluations).where(evaluations.c.id == new_id)).one())

    def evaluations(self, kind: str, ref: str) -> list[EvaluationRecord]:
        """Evaluations of one version (latest for a bare name), newest first."""
        with self._catalog.transaction(write=False) as conn:
            row = self._resolve(conn, kind, ref)
            found = conn.execute(select(evaluations).where(evaluations.c.prompt_id == row.id)
                                 .order_by(evaluations.c.id.desc()))
            return [_evaluation_record(row, evaluation) for evaluation in found]

    # -- cache --------------------------------------------------------------------------------

    def put_cache(self, key: str, payload: bytes) -> None:
        """Store or replace a small derived blob under an arbitrary key."""
        payload = _as_bytes(payload, "cache", key)
        values = dict(key=key, sha256=sha256_of(payload), size=len(payload), payload=payload,
                      created_at=datetime.now(timezone.utc))
        upsert = sqlite_insert(cache).values(**values)
        replace = {column: value for column, value in values.items() if column != "key"}
        upsert = upsert.on_conflict_do_update(index_elements=[cache.c.key], set_=replace)
        with self._catalog.transaction(write=True) as conn:
            conn.execute(upsert)

    def get_cache(self, key: str) -> bytes | None:
        """The verified bytes stored under ``key``, or None."""
        with self._catalog.transaction(write=False) as conn:
            row = conn.execute(select(cache).where(cache.c.key == key)).one_or_none()
        if row is None:
            return None
        if row.size != len(row.payload) or sha256_of(row.payload) != row.sha256:
            raise IntegrityError(f"cache entry {key!r} in registry {self.root} is corrupt (sha256 mismatch); "
                                 "put it again to rebuild it")
        return bytes(row.payload)

    # -- helpers ------------------------------------------------------------------------------

    def _resolve(self, conn: Connection, kind: str, ref: str) -> Row:
        name, version = parse_ref(ref)
        row = _select_version(conn, check_kind(kind), name, version)
        if row is None:
            raise self._not_found(conn, kind, ref)
        return row

    def _not_found(self, conn: Connection, kind: str, ref: str) -> NotFoundError:
        name, _ = parse_ref(ref)
        return NotFoundError(f"no {kind_label(kind)} {ref!r} in registry {self.root}; "
                             f"available: {_available(conn, kind, name)}")

    def _resolve_links(self, conn: Connection, row: dict, sources: tuple[str, ...], attention: str | None,
                       parent: str | None) -> dict:
        """Exact refs for what a new record points at; refuses unknown or foreign-backbone prompts."""
        label = f"{kind_label(row['kind'])} {row['name']}"
        exact = []
        for source in sources:
            found = self._resolve(conn, "source", source)
            _check_same_backbone(label, row, found)
            exact.append(format_ref(found.name, found.version))
        if len(set(exact)) != len(exact):
            raise RegistryError(f"{label}: sources {', '.join(exact)} list a prompt twice; give each source once")
        links = dict(sources=exact, attention=None, parent=None)
        for field, link_kind, ref in (("attention", "attention", attention), ("parent", row["kind"], parent)):
            if ref is not None:
                found = self._resolve(conn, link_kind, ref)
                _check_same_backbone(label, row, found)
                links[field] = format_ref(found.name, found.version)
        return links

    def _collect(self, conn: Connection, shas: set[str]) -> None:
        used = set(conn.scalars(select(prompts.c.sha256).where(prompts.c.sha256.in_(shas))))
        for sha in shas - used:
            self._blobs.delete(sha)

    def _collect_quietly(self, shas: set[str]) -> None:
        # Best effort after a failed register: the blob may now be referenced by nothing.
        try:
            with self._catalog.transaction(write=True) as conn:
                self._collect(conn, shas)
        except (RegistryError, OSError):
            pass


def _new_row(kind: str, name: str, task: str, backbone: str, fingerprint: Mapping[str, Any], d: int, m: int,
             variant: str, config: Any, metrics: Any) -> dict:
    check_kind(kind)
    name = check_name(name)
    label = f"{kind_label(kind)} {name}"
    for field, value in (("task", task), ("backbone", backbone)):
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{label}: {field} must be a non-empty string")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise RegistryError(f"{label}: d must be a positive integer, got {d!r}")
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise RegistryError(f"{label}: m must be a non-negative integer, got {m!r}")
    return dict(kind=kind, name=name, task=task, backbone=backbone, d=d, m=m, variant=variant or "",
                fingerprint=_json_dict(fingerprint, "fingerprint", label), config=_json_dict(config, "config", label),
                metrics=_json_dict(metrics, "metrics", label), created_at=datetime.now(timezone.utc))


def _json_dict(value: Any, field: str, label: str) -> dict:
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise RegistryError(f"{label}: {field} must be a mapping (or a dataclass), got {type(value).__name__}")


def _as_bytes(payload: Any, kind: str, name: str) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) == 0:
        raise RegistryError(f"{kind} {name}: payload must be non-empty bytes (e.g. safetensors.torch.save(...))")
    return bytes(payload)


def _check_same_backbone(label: str, row: dict, found: Row) -> None:
    mismatch = found.d != row["d"] or any(
        key in found.fingerprint and key in row["fingerprint"] and found.fingerprint[key] != row["fingerprint"][key]
        for key in _IDENTITY_KEYS)
    if mismatch:
        raise RegistryError(
            f"{label}: {kind_label(found.kind)} {found.name}@{found.version} was trained for backbone "
            f"{found.backbone} (d={found.d}), not {row['backbone']} (d={row['d']}); use prompts of one backbone")


def _select_version(conn: Connection, kind: str, name: str, version: int | None) -> Row | None:
    query = select(prompts).where(prompts.c.kind == kind, prompts.c.name == name)
    if version is None:
        query = query.order_by(prompts.c.version.desc()).limit(1)
    else:
        query = query.where(prompts.c.version == version)
    return conn.execute(query).first()


def _available(conn: Connection, kind: str, name: str) -> str:
    """What the user could have meant: that name's versions if it exists, else every name's latest."""
    versions = conn.scalars(select(prompts.c.version).where(prompts.c.kind == kind, prompts.c.name == name)
                            .order_by(prompts.c.version)).all()
    if versions:
        refs = [format_ref(name, v) for v in versions]
    else:
        latest = conn.execute(select(prompts.c.name, func.max(prompts.c.version)).where(prompts.c.kind == kind)
                              .group_by(prompts.c.name).order_by(prompts.c.name)).all()
        refs = [format_ref(n, v) for n, v in latest]
    if not refs:
        return "none"
    more = f" (and {len(refs) - _LISTED} more)" if len(refs) > _LISTED else ""
    return ", ".join(refs[:_LISTED]) + more


def _dependants(conn: Connection, kind: str, refs: set[str]) -> list[PromptRecord]:
    targets = select(prompts).where(prompts.c.kind == "target")
    if kind == "source":
        # Few targets exist, so filtering the JSON list here beats a link table's bookkeeping.
        rows = [row for row in conn.execute(targets) if refs.intersection(row.sources)]
    else:
        column = prompts.c.attention if kind == "attention" else prompts.c.parent
        rows = conn.execute(targets.where(column.in_(refs))).all()
    return sorted((_prompt_record(row) for row in rows), key=lambda r: (r.name, r.version))


def _prompt_record(row: Row) -> PromptRecord:
    return PromptRecord(
        kind=row.kind, name=row.name, version=row.version, task=row.task, backbone=row.backbone,
        fingerprint=row.fingerprint, d=row.d, m=row.m, sources=tuple(row.sources), attention=row.attention,
        variant=row.variant, parent=row.parent, config=row.config, metrics=row.metrics, sha256=row.sha256,
        size=row.size, created_at=row.created_at)


def _evaluation_record(prompt: Row, row: Row) -> EvaluationRecord:
    return EvaluationRecord(kind=prompt.kind, name=prompt.name, version=prompt.version, split=row.split,
                            metrics=row.metrics, examples=row.examples, seconds=row.seconds,
                            created_at=row.created_at)
