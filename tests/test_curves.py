"""Learning curves (issue 29 item 4): `--curve-steps` scores the test rows at fixed steps of one training run,
the prompt records them, and `study show --curves` / `--png` draws them per target; on the tiny Llama."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attemptctl.engine.train import TrainConfig, parse_curve_steps
from attemptctl.errors import ConfigError
from registry import Registry

runner = CliRunner()
SMALL = ["--max-steps", "4", "--train-limit", "16", "--dev-limit", "4", "--test-limit", "8", "--batch-size", "4",
         "--max-length", "32", "--eval-every", "4", "--prompt-length", "4"]


def run(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


def test_curve_steps_take_a_canonical_form_and_refuse_what_is_not_steps():
    assert parse_curve_steps("300, 0,100,100") == "0,100,300" and parse_curve_steps(" ") is None
    assert TrainConfig(curve_steps="4,0").curve_steps == "0,4"
    for bad in ("0,ten", "-1,5"):
        with pytest.raises(ConfigError, match="curve-steps"):
            TrainConfig(curve_steps=bad)


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_data_dir, tiny_causal_dir):
    folder = tmp_path_factory.mktemp("curves")
    common = ["--registry", folder / "registry", "--data-dir", real_data_dir]
    result = run("source", "train", "mnli", "--backbone", tiny_causal_dir, *common, *SMALL)
    assert result.exit_code == 0, result.output
    result = run("study", "methods", "rte", "--sources", "mnli", "--methods", "pt,attempt", "--seeds", "1,2",
                 "--name", "curves", "--curve-steps", "4,0,2", *common, *SMALL)
    assert result.exit_code == 0, result.output
    return common


def test_each_cell_records_its_curve_and_the_last_point_is_the_state_it_kept(study):
    shown = json.loads(run("study", "show", "curves", *study[:2], "--json").output)
    assert len(shown["cells"]) == 4
    for cell in shown["cells"]:
        steps = [step for step, _ in cell["curve"]]
        assert steps == [0, 2, 4]
        # one dev check, at step 4: the kept state is step 4's, so its test score is the curve's last point
        assert cell["best_step"] == 4 and cell["curve"][-1][1] == pytest.approx(cell["score"])
        assert all(0 <= score <= 1 for _, score in cell["curve"])
    record = Registry(study[1]).get("target", shown["cells"][0]["prompt"])
    assert [p["step"] for p in record.metrics["curve"]] == [0, 2, 4]
    assert record.metrics["curve"][0]["examples"] == {"rte": 8}


def test_show_curves_draws_each_method_at_each_step_and_the_png_is_written(study, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    result = run("study", "show", "curves", *study[:2], "--curves", "--png", png)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "rte: test accuracy (%) by training step" in text and "learning curves" in text
    for row in ("PT", "ATTEMPT"):
        line = next(line for line in text.splitlines() if line.strip().startswith(row + " "))
        assert line.count("±") == 3 and any(ch in line for ch in "▁▂▃▄▅▆▇█")  # 3 steps, 2 seeds each
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in text
    # the best constant answer on the same test rows, flat at every step
    shown = json.loads(run("study", "show", "curves", *study[:2], "--json").output)
    constant = next(row for row in shown["rows"] if row["method"] == "constant")["scores"]["rte"]["mean"]
    line = next(line for line in text.splitlines() if line.strip().startswith("constant answer"))
    assert line.split()[2:5] == [f"{100 * constant:.1f}"] * 3


def test_a_study_without_curves_says_how_to_get_them(study, tmp_path):
    result = run("study", "methods", "rte", "--sources", "mnli", "--methods", "pt", "--seeds", "1", "--name", "flat",
                 *study, *SMALL)
    assert result.exit_code == 0, result.output
    shown = run("study", "show", "flat", *study[:2], "--curves")
    assert shown.exit_code == 1 and "no learning curve" in shown.output and "--curve-steps" in shown.output


def test_target_train_prints_each_curve_point_naming_the_split_and_rows(study):
    result = run("target", "train", "rte", "--variant", "pt", "--curve-steps", "0,4", *study, *SMALL)
    assert result.exit_code == 0, result.output
    assert "step 0: test accuracy" in result.output and "on 8 rows  (learning curve)" in result.output
    assert "not a curve step" not in result.output  # its one dev check (step 4) is on the curve


def test_a_dev_check_the_curve_skips_is_named_before_training():
    from attemptctl.engine.train import off_curve_dev_steps

    assert off_curve_dev_steps({0, 25, 50, 100}, 25, 100) == [75]  # main-v2's schedule
    assert off_curve_dev_steps({0, 25, 100, 200, 300}, 100, 300) == [] and off_curve_dev_steps(set(), 25, 100) == []
    assert off_curve_dev_steps({0, 10}, 4, 10) == [4, 8]  # the last step is always checked
    assert off_curve_dev_steps({25, 50}, 25, 50, eval_start=True) == [0]  # --eval-start checks the start too
    from attemptctl.cli.progress import off_curve_note

    assert off_curve_note([75]).startswith("note: dev check at step 75 is not a curve step")
    assert "at steps 12, 24, 36, 48, 60, … (80 in all) are not curve steps" in off_curve_note(list(range(12, 961, 12)))


def test_target_train_and_each_study_cell_note_a_dev_step_its_curve_skips(study):
    result = run("target", "train", "rte", "--variant", "pt", "--curve-steps", "0,2", *study, *SMALL)
    assert result.exit_code == 0, result.output
    assert "note: dev check at step 4 is not a curve step" in result.output
    result = run("study", "methods", "rte", "--methods", "pt", "--seeds", "1", "--name", "off-curve",
                 "--curve-steps", "0,2", *study, *SMALL)
    assert result.exit_code == 0, result.output
    assert "note: dev check at step 4 is not a curve step" in " ".join(result.output.split())


def test_a_multi_task_cells_curve_is_at_the_single_task_cells_steps_per_target(study):
    result = run("study", "methods", "rte,cb", "--sources", "mnli", "--methods", "attempt-mt", "--seeds", "1",
                 "--name", "mt-curves", "--curve-steps", "0,2,4", *study, *SMALL)
    assert result.exit_code == 0, result.output
    shown = json.loads(run("study", "show", "mt-curves", *study[:2], "--json").output)
    [record] = {c["prompt"]: c for c in shown["cells"] if c["target"] == "rte"}.values()
    assert [step for step, _ in record["curve"]] == [0, 2, 4]  # the run took 8 steps, 2 per target step
    stored = Registry(study[1]).get("target", record["prompt"])
    assert stored.config["curve_steps"] == "0,4,8" and stored.metrics["steps"] == 8


def test_a_png_of_many_targets_wraps_into_rows_of_four_panels(tmp_path):
    pytest.importorskip("matplotlib")
    import struct

    from attemptctl.cli.render import PNG_COLUMNS, CurveSeries, curves_png

    def size(path):  # the PNG's IHDR: width and height in pixels
        return struct.unpack(">II", path.read_bytes()[16:24])

    series = [CurveSeries("PT", {0: (0.5, None, 1), 25: (0.6, 0.02, 2)})]
    one, six = tmp_path / "one.png", tmp_path / "six.png"
    curves_png([("rte", "accuracy", series)], one)
    curves_png([(f"t{i}", "accuracy", series) for i in range(6)], six)
    (w1, h1), (w6, h6) = size(one), size(six)
    assert w6 == PNG_COLUMNS * w1 and h6 == 2 * h1  # four to a row, the second row half empty


def test_a_method_keeps_its_colour_in_every_panel_even_where_another_is_missing():
    from attemptctl.cli.render import CurveSeries, series_colours

    point = {0: (0.5, None, 1)}
    panels = [("rte", "accuracy", [CurveSeries("SPoT", point), CurveSeries("constant answer", point, reference=True)]),
              ("cb", "macro_f1", [CurveSeries("PT", point), CurveSeries("SPoT", point),
                                  CurveSeries("constant answer", point, reference=True)])]
    assert series_colours(panels) == {"SPoT": "C0", "constant answer": "grey", "PT": "C1"}
