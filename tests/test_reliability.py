"""Reliability of the registry and the CLI's error contract (issue 8), on real files and processes.

Kills are real SIGKILLs, corruption is real bytes on disk, I/O failures are injected by patching
stdlib and SQLAlchemy functions (os.write, os.fsync, os.replace, the dialect's commit), never our
own code. Every registry is a file database in tmp_path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from typer.testing import CliRunner

from attemptctl.cli import app
from registry import MIGRATIONS, IntegrityError, Migration, Registry, RegistryBusyError, RegistryError
from registry.migrations import run_sql
from registry.schema import SCHEMA_VERSION, metadata

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def register(registry: Registry, name: str = "mnli", payload: bytes | None = None, seed: int = 0, **extra):
    payload = payload if payload is not None else save({"prompt": np.full((2, 4), seed, dtype=np.float32)})
    fields = dict(kind="source", name=name, task=name, backbone="tiny", fingerprint={}, d=4, m=2, payload=payload)
    return registry.register(**{**fields, **extra})


def catalog_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "catalog.sqlite") as db:
        return db.execute("SELECT kind, name, version, sha256, size FROM prompts ORDER BY id").fetchall()


def files_under(root: Path, folder: str = "blobs") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / folder).rglob("*")) if p.is_file()}


def assert_consistent(root: Path, *, garbage_allowed: bool) -> None:
    """integrity_check ok; every row's blob exists with its sha256; no blob (or temp) without a row."""
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = catalog_rows(root)
    for _, _, _, sha, size in rows:
        data = (root / "blobs" / sha[:2] / f"{sha}.safetensors").read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    if not garbage_allowed:
        expected = {f"blobs/{sha[:2]}/{sha}.safetensors" for *_, sha, _ in rows}
        assert set(files_under(root)) == expected


# -- (1) kill -9 --------------------------------------------------------------------------------

WRITER = """
import os, sys
from registry import Registry
registry = Registry(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    i += 1
    registry.register(kind="source", name=f"p{i % 3}", task="t", backbone="tiny", fingerprint={}, d=4, m=2,
                      payload=os.urandom(256 + i % 7))
"""


def _register_forever(root: Path, ready) -> None:
    registry = Registry(root)
    ready.set()
    for i in range(1, 10**9):
        registry.register(kind="source", name=f"p{i % 3}", task="t", backbone="tiny", fingerprint={}, d=4, m=2,
                          payload=os.urandom(256 + i % 7))


def test_kill_9_at_random_moments_never_corrupts_and_fix_cleans_up(tmp_path):
    # Forked rather than spawned: the kill is as real, and no trial pays an interpreter start-up.
    root, rng, leftovers, context = tmp_path / "reg", random.Random(8), 0, multiprocessing.get_context("fork")
    for trial in range(32):
        ready = context.Event()
        writer = context.Process(target=_register_forever, args=(root, ready))
        writer.start()
        assert ready.wait(10)
        time.sleep(rng.uniform(0, 0.12))  # a registration takes ~40 ms on 2 CPU cores
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert_consistent(root, garbage_allowed=True)
        fixed = run("registry", "verify", "--fix", "--json", "--registry", root)
        assert fixed.exit_code == 0, fixed.output
        report = json.loads(fixed.stdout)
        assert all(f["problem"] in ("temp", "unreferenced") and f["moved_to"] for f in report["findings"])
        leftovers += len(report["findings"])
        assert_consistent(root, garbage_allowed=False)
        assert Registry(root).verify().findings == ()
    assert len(catalog_rows(root)) >= 10  # the kills landed inside the registration loop
    print(f"32 kills survived, {len(catalog_rows(root))} rows, {leftovers} leftovers quarantined")


# -- (2) corrupted blobs -------------------------------------------------------------------------

class _Bomb:
    """Unpickling this creates the marker file: proof that a payload was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _flip_bit(data: bytes, _marker: Path) -> bytes:
    return data[:40] + bytes([data[40] ^ 0x01]) + data[41:]


def _zero_region(data: bytes, _marker: Path) -> bytes:
    return data[:-16] + bytes(16)


def _damage_header(data: bytes, _marker: Path) -> bytes:
    return b"\xff" * 8 + data[8:]


CORRUPTIONS = {
    "flipped bit": (_flip_bit, "sha256 mismatch"),
    "zeroed region": (_zero_region, "sha256 mismatch"),
    "truncated": (lambda data, _m: data[: len(data) // 2], "truncated"),
    "damaged header": (_damage_header, "sha256 mismatch"),
    "empty file": (lambda _data, _m: b"", "empty"),
    "pickle renamed": (lambda _data, marker: pickle.dumps(_Bomb(marker)), "expected"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_blob_is_named_refused_and_never_unpickled(tmp_path, corruption):
    damage, reason = CORRUPTIONS[corruption]
    marker = tmp_path / "unpickled"
    registry = Registry(tmp_path / "reg")
    victim, other = register(registry, "mnli", seed=1), register(registry, "qqp", seed=2)
    path = registry.root / "blobs" / victim.sha256[:2] / f"{victim.sha256}.safetensors"
    path.write_bytes(damage(path.read_bytes(), marker))
    before, rows = files_under(registry.root), catalog_rows(registry.root)

    with pytest.raises(IntegrityError, match=rf"source prompt mnli@1: file .*{reason}"):
        registry.load_payload(registry.get("source", "mnli"))
    result = run("registry", "verify", "--json", "--registry", registry.root)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["problem"] == "corrupt" and finding["detail"].startswith("source prompt mnli@1: ")
    assert reason in finding["detail"] and finding["moved_to"] is None
    assert "1 problem" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    assert registry.load_payload(other) == save({"prompt": np.full((2, 4), 2, dtype=np.float32)})
    assert files_under(registry.root) == before and catalog_rows(registry.root) == rows
    assert not marker.exists()


# -- (3) concurrent writers and a reader --------------------------------------------------------

def _writer(root: str, errors) -> None:
    registry = Registry(root)
    for _ in range(50):
        try:
            register(registry, "mnli", payload=os.urandom(64))
        except Exception as error:  # noqa: BLE001 - counted, the test expects none
            errors.put(repr(error))


def _reader(root: str, errors, done) -> None:
    registry = Registry(root)
    while not done.is_set():
        try:
            for record in registry.list("source", "mnli", latest_only=True):
                registry.load_payload(record)
        except Exception as error:  # noqa: BLE001
            errors.put(repr(error))


def test_four_writers_and_a_reader_get_versions_1_to_200_without_errors(tmp_path):
    root = str(tmp_path / "reg")
    Registry(root).close()
    context = multiprocessing.get_context("fork")
    errors, done = context.Queue(), context.Event()
    reader = context.Process(target=_reader, args=(root, errors, done))
    writers = [context.Process(target=_writer, args=(root, errors)) for _ in range(4)]
    reader.start()
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
    done.set()
    reader.join(10)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and all(p.exitcode == 0 for p in [*writers, reader])
    assert [r.version for r in Registry(root).list("source", "mnli")] == list(range(1, 201))
    assert_consistent(Path(root), garbage_allowed=False)


# -- (4) a lock held past the timeout -----------------------------------------------------------

def test_lock_held_past_timeout_gives_up_in_time_and_leaves_nothing(tmp_path):
    registry = Registry(tmp_path / "reg", busy_timeout=0.5)
    register(registry, seed=1)
    before, rows = files_under(registry.root), catalog_rows(registry.root)
    holder = sqlite3.connect(registry.root / "catalog.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(RegistryBusyError, match=r"is busy \(another attemptctl is writing\); retry later"):
            register(registry, seed=2)
        assert 0.4 < time.monotonic() - started < 2.0
        assert files_under(registry.root) == before and not list(registry.root.rglob("*.tmp"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert catalog_rows(registry.root) == rows
    assert register(registry, seed=2).version == 2
    assert registry.verify().findings == ()


# -- (5) I/O failure at every step ---------------------------------------------------------------

class _Injector:
    """Counts os.write/os.fsync/os.replace/commit calls and fails the k-th one."""

    def __init__(self, monkeypatch, k: int) -> None:
        self.k, self.calls, self.failed = k, 0, None
        for name in ("write", "fsync", "replace"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))
        monkeypatch.setattr(SQLiteDialect_pysqlite, "do_commit",
                            self._wrap("commit", lambda dialect, dbapi_connection: dbapi_connection.commit()))

    def _wrap(self, name, real):
        def injected(*args, **kwargs):
            self.calls += 1
            if self.calls == self.k:
                self.failed = name
                if name == "commit":
                    raise sqlite3.OperationalError("disk I/O error (injected)")
                raise OSError(errno.EIO, f"injected failure of {name}")
            return real(*args, **kwargs)

        return injected


@pytest.mark.parametrize("shared", [False, True], ids=["new-blob", "blob-shared-with-a-row"])
def test_io_failure_at_every_step_leaves_no_blob_without_row_and_no_row_without_blob(tmp_path, monkeypatch, shared):
    registry = Registry(tmp_path / "reg")
    register(registry, "base", seed=0)
    outcomes = []
    for k in range(1, 60):
        rows = len(catalog_rows(registry.root))
        payload = save({"prompt": np.full((2, 4), 0 if shared else k, dtype=np.float32)})
        with monkeypatch.context() as patch:
            injector = _Injector(patch, k)
            try:
                register(registry, "mnli", payload=payload)
                ok = True
            except RegistryError as error:
                assert injector.failed and "Traceback" not in str(error)
                ok = False
        outcomes.append((injector.failed, ok))
        assert len(catalog_rows(registry.root)) == rows + ok
        assert_consistent(registry.root, garbage_allowed=False)
        assert registry.verify().findings == ()
        if injector.failed is None:
            break
    failed_steps = {step for step, ok in outcomes if step and not ok}
    assert outcomes[-1] == (None, True) and "commit" in failed_steps
    assert shared or {"write", "fsync", "replace"} <= failed_steps


# -- (8) migrations ------------------------------------------------------------------------------

def _schema(path: Path) -> dict:
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: (db.execute(f"PRAGMA table_info({t})").fetchall(),
                    sorted(row[1] for row in db.execute(f"PRAGMA index_list({t})"))) for t in tables}


def test_migration_steps_build_exactly_the_tables_of_schema_py(tmp_path):
    from sqlalchemy import create_engine

    assert SCHEMA_VERSION == MIGRATIONS[-1].version
    Registry(tmp_path / "migrated").close()
    engine = create_engine(f"sqlite:///{tmp_path / 'declared.sqlite'}")
    metadata.create_all(engine)
    engine.dispose()
    assert _schema(tmp_path / "migrated" / "catalog.sqlite") == _schema(tmp_path / "declared.sqlite")


def _populated_v1(root: Path) -> tuple[Registry, dict]:
    registry = Registry(root)
    register(registry, "mnli", seed=1)
    register(registry, "mnli", seed=2)
    registry.register(kind="target", name="rte", task="rte", backbone="tiny", fingerprint={}, d=4, m=2,
                      payload=save({"p": np.ones((2, 4), dtype=np.float32)}), sources=["mnli@1"])
    registry.add_evaluation("target", "rte", "dev", {"accuracy": 0.5}, 10, 1.0)
    registry.put_cache("attention:rte@1", b"weights")
    registry.close()
    return registry, _contents(registry)


def _contents(registry: Registry) -> dict:
    records = registry.list()
    return {"records": records, "payloads": [registry.load_payload(r) for r in records],
            "evaluations": registry.evaluations("target", "rte"), "cache": registry.get_cache("attention:rte@1")}


def test_v1_registry_upgrades_with_every_row_intact(tmp_path):
    _, before = _populated_v1(tmp_path / "reg")
    v2 = Migration(2, "task index and notes", run_sql("ALTER TABLE prompts ADD COLUMN note TEXT",
                                                     "CREATE INDEX ix_prompts_task ON prompts (task)"))
    upgraded = Registry(tmp_path / "reg", migrations=[*MIGRATIONS, v2])
    assert _contents(upgraded) == before and upgraded.verify().findings == ()
    upgraded.close()
    with sqlite3.connect(tmp_path / "reg" / "catalog.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "note" in [row[1] for row in db.execute("PRAGMA table_info(prompts)")]
    refused = run("registry", "list", "--registry", tmp_path / "reg")
    assert refused.exit_code == 1 and "newer attemptctl (schema 2 > 1)" in refused.output


def _explode(_conn) -> None:
    raise RuntimeError("step exploded")


def test_failed_migration_leaves_the_old_schema_and_rows(tmp_path):
    registry, before = _populated_v1(tmp_path / "reg")
    schema = _schema(registry.root / "catalog.sqlite")
    steps = [*MIGRATIONS, Migration(2, "new table", run_sql("CREATE TABLE checkpoints (id INTEGER PRIMARY KEY)")),
             Migration(3, "half done", lambda conn: (run_sql("ALTER TABLE prompts ADD COLUMN note TEXT")(conn),
                                                    _explode(conn)))]
    with pytest.raises(RegistryError, match=r"migration to schema 3 \(half done\) failed: step exploded; "
                                            r"the registry is unchanged at schema 1"):
        Registry(registry.root, migrations=steps)
    assert _schema(registry.root / "catalog.sqlite") == schema
    with sqlite3.connect(registry.root / "catalog.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert _contents(Registry(registry.root)) == before


# -- backup and the error contract ---------------------------------------------------------------

def test_backup_while_a_writer_writes_is_consistent_and_refuses_a_non_empty_folder(tmp_path):
    root = tmp_path / "reg"
    register(Registry(root), "base", seed=1)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, root], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        result = run("registry", "backup", tmp_path / "copy", "--registry", root)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert result.exit_code == 0, result.output
    assert "the copy verifies" in result.stdout
    copied = catalog_rows(tmp_path / "copy")
    assert len(copied) > 1 and set(copied) <= set(catalog_rows(root))
    assert_consistent(tmp_path / "copy", garbage_allowed=False)
    refused = run("registry", "backup", tmp_path / "copy", "--registry", root)
    assert refused.exit_code == 1 and "exists and is not empty" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_unexpected_exception_exits_70_and_names_the_traceback_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTEMPTCTL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "reg"
    register(Registry(root))
    with sqlite3.connect(root / "catalog.sqlite") as db:  # a hand-edited catalog: not an error we foresaw
        db.execute("UPDATE prompts SET config = '{not json'")
    result = run("registry", "list", "--registry", root)
    assert result.exit_code == 70 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("internal error: JSONDecodeError") and "bug in attemptctl" in line
    (crash,) = (tmp_path / "cache").glob("crash-*.txt")
    assert str(crash) in line
    assert "Traceback (most recent call last)" in crash.read_text() and "JSONDecodeError" in crash.read_text()
    assert run("registry", "verify", "--no-such-option").exit_code == 2
