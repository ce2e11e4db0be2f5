"""docs/quickstart.md holds the transcript `python recipes/quickstart.py --data-dir DIR` wrote, and the
README quotes part of it; these tests keep the README's commands, the recipe's commands and the pasted
output in step (torch-free), and run the recipe's doc writer on a page of its own."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC = ROOT / "docs" / "quickstart.md"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("quickstart_recipe", ROOT / "recipes" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _transcript(recipe) -> str:
    tail = DOC.read_text().split(recipe.MARKER, 1)[1]
    return tail.split("```\n", 2)[1]


def _outputs(transcript: str) -> dict[str, list[str]]:
    """Each command of a transcript with the lines it printed (its `# N s wall` line left out)."""
    outputs: dict[str, list[str]] = {}
    command = None
    for line in transcript.splitlines():
        if line.startswith("$ attemptctl "):
            command = line.removeprefix("$ attemptctl ")
            outputs[command] = []
        elif command is not None and not re.fullmatch(r"# \d+ s wall", line):
            outputs[command].append(line)
    return outputs


def test_the_transcript_runs_the_recipes_commands_in_order_each_with_its_wall_time(recipe):
    transcript = _transcript(recipe)
    assert [line.removeprefix("$ attemptctl ") for line in transcript.splitlines() if line.startswith("$ ")] \
        == list(recipe.COMMANDS)
    assert len(re.findall(r"^# \d+ s wall$", transcript, re.MULTILINE)) == len(recipe.COMMANDS)


def test_the_readmes_quick_start_commands_are_the_transcripts(recipe):
    readme = README.read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    typed = [line.split("#", 1)[0].strip().removeprefix("attemptctl ") for line in block.splitlines()
             if line.startswith("attemptctl ")]
    assert typed and all(command in recipe.COMMANDS for command in typed)
    assert [c for c in recipe.COMMANDS if c in typed] == typed  # in the transcript's order


def _quoted(text: str) -> dict[str, list[str]]:
    """Each `$ attemptctl …` output block the README quotes (a plain fence that starts with the command)."""
    quoted = {}
    for block in re.findall(r"^```\n(\$ attemptctl .*?)^```", text, re.MULTILINE | re.DOTALL):
        command, *lines = block.rstrip("\n").splitlines()
        quoted[command.removeprefix("$ attemptctl ")] = lines
    return quoted


def test_every_output_the_readme_quotes_is_the_transcripts(recipe):
    quoted = _quoted(README.read_text())
    outputs = _outputs(_transcript(recipe))
    # the quick start's heatmap and the transfer example's table, at least
    assert {"attn show boolq", next(c for c in recipe.COMMANDS if c.startswith("study methods"))} <= set(quoted)
    for command, lines in quoted.items():  # the whole output, or its first lines (a table, not the heatmap after it)
        assert lines and lines == outputs[command][:len(lines)], command
    assert quoted["attn show boolq"] == outputs["attn show boolq"]


def test_write_doc_replaces_only_the_fenced_block_after_the_marker(recipe, tmp_path, monkeypatch):
    page = tmp_path / "quickstart.md"
    page.write_text(f"intro\n\n{recipe.MARKER}\n```\n$ attemptctl old\n# 1 s wall\n```\n\nprose\n\n```\nkept\n```\n")
    monkeypatch.setattr(recipe, "DOC", page)
    monkeypatch.setattr(recipe, "ROOT", tmp_path)
    recipe.write_doc("$ attemptctl new\nout\n# 2 s wall\n")
    assert page.read_text() == (f"intro\n\n{recipe.MARKER}\n```\n$ attemptctl new\nout\n# 2 s wall\n```\n\n"
                                "prose\n\n```\nkept\n```\n")


def test_write_doc_refuses_a_page_without_the_marker(recipe, tmp_path, monkeypatch):
    page = tmp_path / "quickstart.md"
    page.write_text("no marker here\n")
    monkeypatch.setattr(recipe, "DOC", page)
    with pytest.raises(SystemExit, match="quickstart-transcript"):
        recipe.write_doc("$ attemptctl new\n")
    assert page.read_text() == "no marker here\n"
