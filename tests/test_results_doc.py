"""docs/results.md quotes the committed study exports (`python recipes/study.py docs --data-dir DIR` writes
the quotes); these tests keep every quoted table equal to what the recipe prints from those exports now
(torch-free), so the page cannot drift from the numbers.

The constant-answer rows need the data folder (`baselines`, `per-seed --data-dir`): they are left out of
the comparison with the committed page, and `docs` is run on a page of its own below to show it writes
them from the real data."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
_SPEC = importlib.util.spec_from_file_location("study_recipe", ROOT / "recipes" / "study.py")
_RECIPE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_RECIPE)
BLOCK = re.compile(_RECIPE.DOC_BLOCK, re.DOTALL)  # the blocks `python recipes/study.py docs` writes
COMMAND = {"results-table": "table", "per-seed": "per-seed", "compare": "compare", "headroom": "table",
           "curves": "curves"}
PNG = b"\x89PNG\r\n\x1a\n"


def _blocks() -> list[tuple[str, str, str]]:
    """The quotes of the exports (torch- and data-free); the power table needs the data, tested below."""
    return [block for block in BLOCK.findall(PAGE.read_text()) if block[0] != "power"]


def test_the_page_quotes_the_main_study_and_its_seeds_and_closes_every_quote():
    assert {(kind, part) for kind, part, _ in _blocks()} >= {("results-table", "start-lr"), ("per-seed", "start-lr")}
    text = PAGE.read_text()  # a quote left open would make `docs` swallow the prose up to the next one
    assert len(BLOCK.findall(text)) == sum(text.count(f"<!-- {kind}: ") for kind in (*COMMAND, "power"))
    assert ("compare", "defaults", ) in {(kind, part) for kind, part, _ in _blocks()}
    assert all(body.strip() for _, _, body in _blocks())


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_each_quoted_table_is_what_the_recipe_prints(index, tmp_path):
    kind, part, quoted = _blocks()[index]
    script = "headroom.py" if kind == "headroom" else "study.py"
    printed = subprocess.run([sys.executable, str(ROOT / "recipes" / script), COMMAND[kind], part],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    if kind == "curves":  # the terminal drawing in a text block, and the PNG beside the page, of as many panels
        printed = _RECIPE.curve_quote(part, printed)
        fresh = tmp_path / "fresh.png"
        subprocess.run([sys.executable, str(ROOT / "recipes" / "study.py"), "curves", part, "--png", str(fresh)],
                       capture_output=True, check=True, cwd=ROOT)
        committed = (PAGE.parent / "img" / f"curves-{part}.png").read_bytes()
        assert committed[:8] == PNG and committed[16:24] == fresh.read_bytes()[16:24]  # IHDR: width, height
    def kept(text):  # a constant-answer row from the data (not the exports) is left out of both sides
        return [line for line in text.strip().splitlines() if not line.startswith("| constant answer |")]
    assert kept(quoted) == kept(printed)
    if kind in ("results-table", "per-seed"):  # the constant-answer row is there to read against
        assert len(kept(quoted)) < len(quoted.strip().splitlines())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_docs_rewrites_each_quote_with_its_constant_row_and_refuses_a_broken_page(tmp_path, monkeypatch,
                                                                                 real_data_dir):
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text("# Page\n\n<!-- results-table: ablations -->\nstale\n<!-- /results-table -->\n\nProse stays.\n\n"
                    "<!-- per-seed: ablations -->\n<!-- /per-seed -->\n\n<!-- curves: main-v2 -->\n<!-- /curves -->\n")
    monkeypatch.setattr(_RECIPE, "ROOT", tmp_path)  # the page only: the tables still come from the real exports
    _RECIPE.docs(type("Args", (), {"data_dir": str(real_data_dir)})())
    text = page.read_text()
    [(_, _, table), (_, _, seeds), (_, _, curves)] = BLOCK.findall(text)
    assert curves.startswith("```text\nStudy main-v2: learning curves") and "yelp: test accuracy" in curves
    assert "![Learning curves of main-v2](img/curves-main-v2.png)" in curves
    assert (tmp_path / "docs" / "img" / "curves-main-v2.png").read_bytes()[:8] == PNG
    lines = table.strip().splitlines()
    first_end = next(i for i, line in enumerate(lines) if i and not line.startswith("|"))
    assert lines[first_end - 1].startswith("| constant answer | 0 | ") and "stale" not in text
    assert "Prose stays." in text and seeds.strip().splitlines()[-1].startswith("| constant answer | ")
    unclosed = "<!-- results-table: ablations -->\nno end\n\nProse.\n<!-- per-seed: ablations -->\nx\n<!-- /per-seed -->\n"
    for broken in (unclosed, "<!-- results-table: nosuch -->\nx\n<!-- /results-table -->\n"):
        page.write_text(broken)
        with pytest.raises(SystemExit, match="nothing rewritten|unknown part 'nosuch'"):
            _RECIPE.docs(type("Args", (), {"data_dir": str(real_data_dir)})())
        assert page.read_text() == broken


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_power_table_is_what_the_recipe_prints_from_the_data(real_data_dir):
    [quoted] = [body for kind, _, body in BLOCK.findall(PAGE.read_text()) if kind == "power"]
    printed = subprocess.run([sys.executable, str(ROOT / "recipes" / "study.py"), "power", "--data-dir",
                              str(real_data_dir)], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert quoted.strip() == printed.strip() and "| rte | accuracy | 139 |" in quoted


def test_every_transfer_table_is_the_kept_output_it_names():
    """Each `<!-- transfer-table: PATH -->` quote is the committed output of `study.py transfer` at PATH."""
    quotes = re.findall(r"<!-- transfer-table: (\S+) -->\n(.*?)<!-- /transfer-table -->", PAGE.read_text(), re.DOTALL)
    assert len(quotes) >= 2
    for path, body in quotes:
        assert (ROOT / path).read_text() == body, path
