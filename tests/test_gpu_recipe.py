"""The GPU recipe's CPU half (recipes/gpu/gpu.py, docs/gpu.md): prepare packs two carries that fit, stage
and reassembly give back the GGUF byte for byte, and run's preflight passes on the zoo's backbone and
stops on one whose special ids differ."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("gpu_recipe", ROOT / "recipes" / "gpu" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def staged(gpu, tmp_path_factory, real_data_dir, smollm2_dir):
    """prepare (no wheels: this machine has the packages) and stage into temporary folders."""
    root = tmp_path_factory.mktemp("gpu")
    sizes = gpu.prepare(SimpleNamespace(out=str(root / "carry"), data_dir=str(real_data_dir), wheels_from=None,
                                        no_wheels=True))
    where = root / "stage"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTEMPTCTL_GPU_STAGE", str(where))
        gpu.stage(SimpleNamespace(carried=str(root / "carry" / "one")))
        gguf = gpu._assemble(where, root / "carry" / "two")
    return SimpleNamespace(root=root, where=where, sizes=sizes, gguf=gguf)


def test_prepare_packs_two_carries_under_the_limit_that_rebuild_the_gguf(gpu, staged):
    assert all(s["with_tree"] <= gpu.LIMIT - gpu.MARGIN for s in staged.sizes.values())
    assert staged.sizes["one"]["carried"] > 40 * 2**20 and staged.sizes["two"]["carried"] > 40 * 2**20
    # the GGUF is cut where both carry the same bytes (command 1's wheels and payload included), not midway
    assert abs(staged.sizes["one"]["carried"] - staged.sizes["two"]["carried"]) < 2**16
    original = gpu._gguf()
    assert hashlib.sha256(staged.gguf.read_bytes()).hexdigest() == hashlib.sha256(original.read_bytes()).hexdigest()
    assert (staged.where / "data" / "glue" / "rte" / "train.jsonl").is_file()
    assert (staged.where / "tokenizer" / "tokenizer.json").is_file()
    # the zoo the main study pins travels with the data: the workers pull it, not whatever the package ships
    packed = (staged.where / "zoo" / "smollm2-135m" / "manifest.json").read_bytes()
    pinned = subprocess.run(["git", "-C", str(ROOT), "show", f"{gpu._main_zoo().parent.parent.name}:"
                             "attemptctl/zoo/smollm2-135m/manifest.json"], capture_output=True, check=False)
    assert pinned.returncode == 0 and packed == pinned.stdout  # the pinned commit's manifest, byte for byte
    assert json.loads(packed)["prompts"]["sst2"]["sha256"].startswith("d08b0d2d3dc0434b")  # main-v2's SST-2
    expected = json.loads((staged.where / "expected.json").read_text())
    assert expected["fingerprint"]["special_ids"] == {"bos": 1, "eos": 2, "pad": 2}


def test_the_sources_plan_trains_each_zoo_source_at_each_rate_on_a_schedule_that_ends(gpu):
    jobs = gpu.plan(which="sources")
    assert {(j["task"], j["options"]["lr"]) for j in jobs} == {
        (task, rate) for task in gpu.SOURCE_TRAINING for rate in gpu.SOURCE_RATES}
    assert len({j["name"] for j in jobs}) == len(jobs)  # one output file per job
    for job in jobs:
        assert job["kind"] == "source"
        options = job["options"]
        # the linear schedule reaches zero inside the run, and the dev check sees its end
        assert options["warmup_steps"] < options["max_steps"] and options["max_steps"] % options["eval_every"] == 0
        assert options["max_steps"] < gpu.SOURCE_OPTIONS["max_steps"]
    smoke = gpu.plan(smoke=True, which="sources")
    assert {j["task"] for j in smoke} == {gpu.SOURCE_TRAINING[0]} and len(smoke) == len(gpu.SOURCE_RATES)


def test_the_main_plan_is_the_cpu_main_study_at_ten_times_its_rows_under_the_transfer_recipe(gpu):
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import study
    finally:
        sys.path.remove(str(ROOT / "recipes"))
    cpu, here = study.PARTS["main-v2"]["budget"], study.PARTS["gpu-main-v2"]["budget"]
    assert gpu.MAIN["max_steps"] * gpu.MAIN["batch_size"] == 10 * cpu["--max-steps"] * cpu["--batch-size"]
    from attemptctl.engine.train import curve_points, off_curve_dev_steps  # every GPU cell's score on its curve

    assert off_curve_dev_steps(set(curve_points(gpu.MAIN["curve_steps"])), gpu.MAIN["eval_every"],
                               gpu.MAIN["max_steps"]) == []
    # the GPU part recipes/study.py reads back is the plan's, flag for flag
    assert {k.removeprefix("--").replace("-", "_"): v for k, v in here.items()
            if k not in ("--preset", "--recipe")} == gpu.MAIN
    jobs = gpu.plan(which="main")
    assert all(j["kind"] == "cell" and j["recipe"] == "transfer" and j["init"] is None for j in jobs)
    assert {j["study"] for j in jobs} == {study.PARTS["gpu-main-v2"]["study"]}
    singles = [(j["seed"], j["targets"][0], j["method"]) for j in jobs if j["method"] != "attempt-mt"]
    assert len(singles) == len(set(singles)) == len(gpu.SEEDS) * len(gpu.TARGETS) * len(gpu.MAIN_METHODS)
    assert [s for s, _, _ in singles] == sorted(s for s, _, _ in singles)  # seed by seed
    multi = [j for j in jobs if j["method"] == "attempt-mt"]  # one run over every target, each seed's last
    assert [j["seed"] for j in multi] == list(gpu.SEEDS) and all(j["targets"] == list(gpu.TARGETS) for j in multi)


def test_a_damaged_half_is_refused_before_anything_runs(gpu, staged, tmp_path):
    broken = tmp_path / "two"
    broken.mkdir()
    data = bytearray((staged.root / "carry" / "two" / "gguf.part2").read_bytes())
    data[100] ^= 0xFF
    (broken / "gguf.part2").write_bytes(bytes(data))
    staged.gguf.unlink()
    with pytest.raises(SystemExit, match="reassembled GGUF's checksum differs"):
        gpu._assemble(staged.where, broken)
    gpu._assemble(staged.where, staged.root / "carry" / "two")  # the good half rebuilds it


def _preflight(gpu, where: Path, out: Path):
    env = {**gpu._environment(where), "ATTEMPTCTL_GPU_STAGE": str(where)}
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "gpu" / "gpu.py"), "preflight", "--out", str(out),
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=600)


def test_preflight_passes_on_the_zoo_backbone_and_stops_on_another_eos(gpu, staged, tmp_path):
    done = _preflight(gpu, staged.where, tmp_path)
    report = json.loads((tmp_path / "preflight.json").read_text())
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["ok"] and report["probe_ok"] and report["fingerprint"]["special_ids"]["eos"] == 2
    expected = json.loads((staged.where / "expected.json").read_text())
    expected["fingerprint"]["special_ids"]["eos"] = 1  # what transformers 5.17 made of the GGUF
    (staged.where / "expected.json").write_text(json.dumps(expected))
    done = _preflight(gpu, staged.where, tmp_path)
    report = json.loads((tmp_path / "preflight.json").read_text())
    assert done.returncode == 3 and not report["ok"]
    assert "eos id 1" in report["error"] and "eos id 2" in report["error"]


def test_the_plan_is_ten_times_the_cpu_study_and_puts_sources_and_first_seeds_first(gpu):
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import study
    finally:
        sys.path.remove(str(ROOT / "recipes"))
    cpu_rows = study.BUDGET["--max-steps"] * study.BUDGET["--batch-size"]
    assert gpu.STUDY["max_steps"] * gpu.STUDY["batch_size"] == 10 * cpu_rows
    jobs = gpu.plan()
    assert [j["kind"] for j in jobs[:len(gpu.SOURCE_TRAINING)]] == ["source"] * len(gpu.SOURCE_TRAINING)
    seeds = [j["seed"] for j in jobs if j["kind"] == "cell" and j["method"] != "attempt-mt"]
    assert seeds == sorted(seeds) and set(seeds) == set(gpu.SEEDS)
    cells = {(j["study"], j["targets"][0], j["method"], j["seed"]) for j in jobs if j["kind"] == "cell"}
    assert len(cells) == len(jobs) - len(gpu.SOURCE_TRAINING)  # no cell twice
