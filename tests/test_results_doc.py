"""docs/results.md quotes the committed study exports (`python recipes/study.py docs --data-dir DIR` writes
the quotes); these tests keep every quoted table equal to what the recipe prints from those exports now
(torch-free), so the page cannot drift from the numbers.

The constant-answer rows need the data folder (`baselines`, `per-seed --data-dir`) and are checked by
test_study_recipe.py's constant-answer test instead; they are left out of the comparison here."""

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
COMMAND = {"results-table": "table", "per-seed": "per-seed"}


def _blocks() -> list[tuple[str, str, str]]:
    return BLOCK.findall(PAGE.read_text())


def test_the_page_quotes_the_main_study_and_its_seeds_and_closes_every_quote():
    assert {(kind, part) for kind, part, _ in _blocks()} >= {("results-table", "start-lr"), ("per-seed", "start-lr")}
    text = PAGE.read_text()  # a quote left open would make `docs` swallow the prose up to the next one
    assert len(_blocks()) == text.count("<!-- results-table: ") + text.count("<!-- per-seed: ")
    assert all(body.strip() for _, _, body in _blocks())


@pytest.mark.parametrize("kind,part", [(kind, part) for kind, part, _ in _blocks()])
def test_each_quoted_table_is_what_the_recipe_prints(kind, part):
    quoted = next(text for k, p, text in _blocks() if (k, p) == (kind, part))
    printed = subprocess.run([sys.executable, str(ROOT / "recipes" / "study.py"), COMMAND[kind], part],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    kept = [line for line in quoted.strip().splitlines() if not line.startswith("| constant answer |")]
    assert kept == printed.strip().splitlines()
    assert len(kept) < len(quoted.strip().splitlines())  # the constant-answer row is there to read against
