"""The prompt registry on real SQLite files and real blob files; no mocks."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, save

from registry import IntegrityError, InUseError, NotFoundError, Registry, RegistryBusyError, RegistryError

FINGERPRINT = {"name": "tiny", "class": "Tiny", "d": 8, "vocab_size": 32, "config_sha256": "c" * 64,
               "embedding_sha256": "e" * 64}


def prompt_bytes(seed: int = 0, m: int = 4, d: int = 8) -> bytes:
    return save({"prompt": np.arange(m * d, dtype=np.float32).reshape(m, d) + seed})


def register(registry: Registry, kind: str = "source", name: str = "mnli", seed: int = 0, **extra) -> object:
    fields = dict(kind=kind, name=name, task=name, backbone="tiny", fingerprint=FINGERPRINT, d=8,
                  m=0 if kind == "attention" else 4, payload=prompt_bytes(seed))
    fields.update(extra)
    return registry.register(**fields)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg")


def blob_files(registry: Registry) -> list[Path]:
    return sorted(p for p in (registry.root / "blobs").rglob("*") if p.is_file())


def test_round_trip_returns_the_same_tensor_and_metadata(registry: Registry) -> None:
    record = register(registry, config={"lr": 0.3, "path": Path("/data")}, metrics={"dev": {"accuracy": 0.7}},
                      variant="prompt-tuning")
    again = Registry(registry.root).get("source", "mnli")
    assert again == record
    assert again.ref == "mnli@1" and again.label == "source prompt mnli@1"
    assert again.config == {"lr": 0.3, "path": "/data"} and again.metrics["dev"]["accuracy"] == 0.7
    assert again.fingerprint == FINGERPRINT and again.created_at.tzinfo == timezone.utc
    assert again.size == len(prompt_bytes()) and len(again.sha256) == 64
    tensors = load(registry.load_payload(again))
    np.testing.assert_array_equal(tensors["prompt"], np.arange(32, dtype=np.float32).reshape(4, 8))
    assert registry.load_payload(again) == prompt_bytes()
    assert blob_files(registry) == [registry.root / "blobs" / record.sha256[:2] / f"{record.sha256}.safetensors"]


def test_versions_increment_per_kind_and_name(registry: Registry) -> None:
    assert [register(registry, seed=i).version for i in range(3)] == [1, 2, 3]
    assert register(registry, name="qqp").version == 1
    assert register(registry, kind="target", name="mnli").version == 1
    assert registry.get("source", "mnli@2").version == 2
    assert registry.get("source", "mnli").version == 3
    assert load(registry.load_payload(registry.get("source", "mnli@2")))["prompt"][0, 0] == 1
    assert [r.ref for r in registry.list("source")] == ["mnli@1", "mnli@2", "mnli@3", "qqp@1"]
    assert [(r.kind, r.ref) for r in registry.list(latest_only=True)] == [
        ("source", "mnli@3"), ("source", "qqp@1"), ("target", "mnli@1")]
    assert registry.find("mnli").kind == "target"
    assert registry.find("qqp").kind == "source"
    assert registry.find("mnli@2", kinds=("source",)).version == 2


def test_unknown_names_and_versions_list_what_exists(registry: Registry) -> None:
    register(registry, name="mnli")
    register(registry, name="sst2")
    register(registry, name="sst2", seed=1)
    with pytest.raises(NotFoundError, match=r"no source prompt 'qqp' in registry .*; available: mnli@1, sst2@2$"):
        registry.get("source", "qqp")
    with pytest.raises(NotFoundError, match=r"'sst2@5'.*available: sst2@1, sst2@2$"):
        registry.get("source", "sst2@5")
    with pytest.raises(NotFoundError, match=r"no target prompt 'x'.*available: none$"):
        registry.get("target", "x")
    with pytest.raises(NotFoundError, match="target prompt or source prompt 'qqp'"):
        registry.find("qqp")
    with pytest.raises(RegistryError, match="NAME@VERSION"):
        registry.get("source", "mnli@zero")
    with pytest.raises(RegistryError, match="unknown prompt kind"):
        registry.get("sauce", "mnli")


def test_corrupt_or_missing_blob_is_refused(registry: Registry) -> None:
    record = register(registry)
    (path,) = blob_files(registry)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"source prompt mnli@1: file .* sha256 mismatch \(file is corrupt\)"):
        registry.load_payload(record)
    path.unlink()
    with pytest.raises(IntegrityError, match=r"source prompt mnli@1: file .* is missing; restore it"):
        registry.load_payload(record)
    # Registering the same content again repairs the blob for both versions.
    register(registry)
    assert registry.load_payload(record) == prompt_bytes()


def test_remove_refuses_sources_and_attention_in_use_unless_forced(registry: Registry) -> None:
    register(registry, name="mnli")
    register(registry, name="qqp")
    register(registry, kind="attention", name="boolq")
    target = register(registry, kind="target", name="boolq", sources=["mnli", "qqp@1"], attention="boolq",
                      variant="attempt")
    assert target.sources == ("mnli@1", "qqp@1") and target.attention == "boolq@1"
    assert registry.dependants("source", "qqp@1") == [target]
    assert registry.dependants("attention", "boolq") == [target]
    with pytest.raises(InUseError, match="source prompt mnli@1 is used by target prompt boolq@1"):
        registry.remove("source", "mnli")
    with pytest.raises(InUseError, match="attention module boolq@1 is used by target prompt boolq@1"):
        registry.remove("attention", "boolq@1")
    assert [r.ref for r in registry.remove("source", "mnli", force=True)] == ["mnli@1"]
    assert [r.ref for r in registry.list("source")] == ["qqp@1"]
    registry.remove("target", "boolq")
    assert registry.remove("source", "qqp") and registry.remove("attention", "boolq")
    assert registry.list() == [] and blob_files(registry) == []
    with pytest.raises(NotFoundError):
        registry.remove("source", "qqp")


def test_blob_shared_by_two_versions_survives_removing_one(registry: Registry) -> None:
    first, second = register(registry), register(registry)
    assert first.sha256 == second.sha256 and len(blob_files(registry)) == 1
    registry.add_evaluation("source", "mnli@1", "dev", {"accuracy": 0.5}, 10, 1.0)
    assert registry.remove("source", "mnli@1") == [first]
    assert registry.load_payload(second) == prompt_bytes()
    registry.remove("source", "mnli@2")
    assert blob_files(registry) == []


def test_register_with_unknown_reference_writes_nothing(registry: Registry) -> None:
    register(registry, name="mnli")
    before = blob_files(registry)
    for links in ({"sources": ["mnli", "qqp@1"]}, {"attention": "boolq"}, {"parent": "boolq@1"}):
        with pytest.raises(NotFoundError, match="available"):
            register(registry, kind="target", name="boolq", seed=7, **links)
    assert [r.ref for r in registry.list()] == ["mnli@1"]
    assert blob_files(registry) == before
    assert not list(registry.root.rglob("*.tmp"))


def test_register_refuses_prompts_of_another_backbone(registry: Registry) -> None:
    register(registry, name="mnli")
    other = dict(FINGERPRINT, embedding_sha256="f" * 64)
    with pytest.raises(RegistryError, match="was trained for backbone tiny"):
        register(registry, kind="target", name="boolq", sources=["mnli"], fingerprint=other)
    with pytest.raises(RegistryError, match="d=8"):
        register(registry, kind="target", name="boolq", sources=["mnli"], d=16)
    with pytest.raises(RegistryError, match="twice"):
        register(registry, kind="target", name="boolq", sources=["mnli", "mnli@1"])


def test_default_backbone_is_the_latest_registration(registry: Registry) -> None:
    assert registry.default_backbone() is None
    register(registry, backbone="smollm2-135m")
    register(registry, name="qqp", backbone="t5-base")
    assert registry.default_backbone() == "t5-base"


def test_evaluations_read_back_newest_first(registry: Registry) -> None:
    register(registry)
    register(registry, seed=1)
    registry.add_evaluation("source", "mnli@1", "dev", {"accuracy": 0.5}, 100, 2.5)
    registry.add_evaluation("source", "mnli@1", "test", {"accuracy": 0.6, "f1": 0.55}, 200, 4.0)
    latest = registry.add_evaluation("source", "mnli", "dev", {"accuracy": 0.9}, 100, 1.0)
    assert latest.ref == "mnli@2"
    found = registry.evaluations("source", "mnli@1")
    assert [(e.split, e.examples, e.seconds) for e in found] == [("test", 200, 4.0), ("dev", 100, 2.5)]
    assert found[0].metrics == {"accuracy": 0.6, "f1": 0.55} and found[0].created_at.tzinfo == timezone.utc
    assert registry.evaluations("source", "mnli") == [latest]


def test_cache_put_get_and_verification(registry: Registry) -> None:
    assert registry.get_cache("attention:boolq@1") is None
    registry.put_cache("attention:boolq@1", b"weights-1")
    registry.put_cache("attention:boolq@1", b"weights-2")
    assert registry.get_cache("attention:boolq@1") == b"weights-2"
    with sqlite3.connect(registry.root / "catalog.sqlite") as raw:
        raw.execute("UPDATE cache SET payload = ? WHERE key = ?", (b"weights-3", "attention:boolq@1"))
    with pytest.raises(IntegrityError, match="cache entry 'attention:boolq@1'.*corrupt"):
        registry.get_cache("attention:boolq@1")


def test_newer_schema_is_refused(registry: Registry) -> None:
    register(registry)
    registry.close()
    with sqlite3.connect(registry.root / "catalog.sqlite") as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(RegistryError, match=r"written by a newer attemptctl \(schema 99 > 1\); upgrade attemptctl"):
        Registry(registry.root)


def test_writer_holding_the_lock_makes_writes_busy_but_not_reads(tmp_path: Path) -> None:
    registry = Registry(tmp_path, busy_timeout=0.2)
    register(registry)
    raw = sqlite3.connect(tmp_path / "catalog.sqlite", isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    try:
        busy = r"registry .* is busy \(another attemptctl is writing\); retry later"
        with pytest.raises(RegistryBusyError, match=busy):
            register(registry, seed=1)
        assert registry.get("source", "mnli").version == 1
    finally:
        raw.execute("ROLLBACK")
        raw.close()
    assert not list(tmp_path.rglob("*.tmp"))
    assert register(registry, seed=1).version == 2


def test_registry_module_does_not_import_torch() -> None:
    code = "import sys, registry; assert 'torch' not in sys.modules and 'attemptctl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _register_many(args: tuple[str, int]) -> list[int]:
    root, worker = args
    registry = Registry(root)
    return [register(registry, seed=(worker * 10 + i) % 3).version for i in range(10)]


def test_concurrent_registrations_get_distinct_consecutive_versions(tmp_path: Path) -> None:
    # The workers open a registry that does not exist yet, so schema creation races too.
    root = str(tmp_path / "shared")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        versions = pool.map(_register_many, [(root, worker) for worker in range(4)])
    assert sorted(v for vs in versions for v in vs) == list(range(1, 41))
    registry = Registry(root)
    assert [r.version for r in registry.list("source", "mnli")] == list(range(1, 41))
    assert len(blob_files(registry)) == 3 and not list(registry.root.rglob("*.tmp"))
    for record in registry.list():
        registry.load_payload(record)
