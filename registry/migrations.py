"""Schema versions of the catalog and the ordered steps between them.

The version lives in ``PRAGMA user_version``; 0 is a new, empty file. Opening a registry applies
every step above the file's version in ONE ``BEGIN IMMEDIATE`` transaction, with the version bump
inside it: SQLite's DDL is transactional, so a failure anywhere (or a kill -9) leaves the file at
its old schema with every row as it was. A file newer than the code is refused, never touched.

To change a table: append a ``Migration(N + 1, ...)`` whose ``apply`` runs the DDL and any data
rewrite, change ``schema.py`` to match, and keep the earlier steps exactly as they are (they
describe files that already exist). ``tests/test_reliability.py`` checks that the steps build the
same tables as ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection


@dataclass(frozen=True)
class Migration:
    """One step: ``apply`` turns a catalog at ``version - 1`` into one at ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


# Schema 1, frozen as SQL so that later edits of schema.py cannot change what "version 1" means.
_V1 = (
    """CREATE TABLE prompts (
        id INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, name VARCHAR(200) NOT NULL,
        version INTEGER NOT NULL, task VARCHAR(500) NOT NULL, backbone VARCHAR(500) NOT NULL,
        fingerprint TEXT NOT NULL, d INTEGER NOT NULL, m INTEGER NOT NULL, sources TEXT NOT NULL,
        attention VARCHAR(220), variant VARCHAR(100) NOT NULL, parent VARCHAR(220),
        config TEXT NOT NULL, metrics TEXT NOT NULL, sha256 VARCHAR(64) NOT NULL, size INTEGER NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_prompts_kind_name_version UNIQUE (kind, name, version),
        CONSTRAINT ck_prompts_kind CHECK (kind IN ('source', 'target', 'attention')),
        CONSTRAINT ck_prompts_version CHECK (version >= 1))""",
    "CREATE INDEX ix_prompts_sha256 ON prompts (sha256)",
    """CREATE TABLE cache (
        "key" TEXT NOT NULL, sha256 VARCHAR(64) NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        PRIMARY KEY ("key"))""",
    """CREATE TABLE evaluations (
        id INTEGER NOT NULL, prompt_id INTEGER NOT NULL, split VARCHAR(50) NOT NULL, metrics TEXT NOT NULL,
        examples INTEGER NOT NULL, seconds FLOAT NOT NULL, created_at VARCHAR(40) NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(prompt_id) REFERENCES prompts (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_evaluations_prompt_id ON evaluations (prompt_id)",
)


def run_sql(*statements: str) -> Callable[[Connection], None]:
    """A migration step that executes ``statements`` in order."""

    def apply(conn: Connection) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "prompts, evaluations and cache tables", run_sql(*_V1)),
)


def check_order(migrations: Sequence[Migration]) -> int:
    """The version the steps lead to; refuses gaps and reordering, which would skip DDL silently."""
    versions = [step.version for step in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..N in order, got {versions}")
    return len(versions)


def pending(migrations: Sequence[Migration], current: int) -> list[Migration]:
    return [step for step in migrations if step.version > current]
