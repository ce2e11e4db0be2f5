"""The SQLite side of the registry: engine, locking, error translation and schema checks."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.pool import NullPool

from .errors import RegistryBusyError, RegistryError
from .migrations import MIGRATIONS, Migration, check_order, pending

_WRITE = "registry_write"


class Catalog:
    """Opens one connection per transaction on ``catalog.sqlite``.

    Writes take ``BEGIN IMMEDIATE``: the write lock is acquired up front, so two processes that
    both read ``max(version)`` can never both insert the next one, and waiting happens in SQLite's
    busy handler instead of failing halfway through a transaction.
    """

    def __init__(self, path: Path, busy_timeout: float, migrations: Sequence[Migration] = MIGRATIONS, *,
                 read_only: bool = False) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.migrations = tuple(migrations)
        self.schema_version = check_order(self.migrations)
        self._engine: Engine | None = None
        self._check_schema()

    @property
    def engine(self) -> Engine:
        # Created lazily so that close() can drop it and a later call simply opens a new one.
        if self._engine is None:
            self._engine = _create_engine(self.path, self.busy_timeout, self.read_only)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """One connection and one transaction; committed on success, rolled back on any error."""
        if write and self.read_only:
            raise RegistryError(f"registry {self.path.parent} is open read-only here; nothing was changed")
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_WRITE: write})
                with conn.begin():
                    yield conn
        except exc.IntegrityError as error:
            raise RegistryError(f"registry {self.path} refused the change: {error.orig}") from None
        except (exc.DBAPIError, sqlite3.Error) as error:
            raise self._translate(error) from None

    def _translate(self, error: Exception) -> RegistryError:
        cause = getattr(error, "orig", None) or error
        text = str(cause)
        if "locked" in text or "busy" in text:
            return RegistryBusyError(f"registry {self.path} is busy (another attemptctl is writing); retry later")
        return RegistryError(f"registry {self.path} cannot be used: {text}; check the file or restore a backup")

    def _check_schema(self) -> None:
        with self.transaction(write=False) as conn:
            version = _user_version(conn)
        self._refuse_newer(version)
        if version == self.schema_version:
            return
        if self.read_only:
            raise RegistryError(f"registry {self.path.parent} has schema {version}, this attemptctl reads "
                                f"{self.schema_version}; upgrade it once with a command that writes "
                                "(e.g. `attemptctl registry list`)")
        # Re-read under the write lock: several processes may open a fresh registry at once.
        with self.transaction(write=True) as conn:
            version = _user_version(conn)
            self._refuse_newer(version)
            for step in pending(self.migrations, version):
                try:
                    step.apply(conn)
                except Exception as error:  # noqa: BLE001 - any failure must name the step, then roll back
                    raise RegistryError(
                        f"registry {self.path}: migration to schema {step.version} ({step.description}) failed: "
                        f"{_reason(error)}; the registry is unchanged at schema {version}") from error
            # Inside the same transaction: the tables and the number that describes them commit together.
            conn.exec_driver_sql(f"PRAGMA user_version = {self.schema_version}")

    def _refuse_newer(self, version: int) -> None:
        if version > self.schema_version:
            raise RegistryError(
                f"registry {self.path} was written by a newer attemptctl "
                f"(schema {version} > {self.schema_version}); upgrade attemptctl"
            )


def _reason(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).splitlines()[0] if str(error) else type(error).__name__


def _user_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def _enable_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """WAL lets readers proceed while one process writes; the mode persists in the file.

    Switching modes needs an exclusive lock and SQLite reports contention at once instead of
    calling the busy handler, so processes opening a fresh registry together retry here.
    """
    deadline = time.monotonic() + busy_timeout
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _create_engine(path: Path, busy_timeout: float, read_only: bool = False) -> Engine:
    # NullPool: a file database gains nothing from pooling, and no connection outlives its
    # transaction, which keeps the registry safe to use after fork and after dispose().
    # Read-only: SQLite itself refuses every write (``mode=ro``), whatever the code above it does.
    url = f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true" if read_only else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # pysqlite's own BEGIN handling is turned off so that _on_begin decides how to begin
        # (the SQLAlchemy recipe for SQLite transactions).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not read_only:  # a read-only connection cannot switch modes; it reads in the file's own
                _enable_wal(cursor, busy_timeout)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
