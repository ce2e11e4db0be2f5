"""Issue 8, test 7: bad inputs for every command, table-driven.

Each case runs the real CLI against ONE registry (2 sources, 1 target) built once for the module and
checks the contract of docs/errors.md: exit 1 with one `error:` line naming the problem (data errors
as `path:line[:col]: reason`), exit 2 for usage errors, never a traceback, and the registry untouched
(same files, same rows in every table). A few cases check that a UTF-8 BOM and blank lines are
accepted.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app

runner = CliRunner()
TINY_TARGET = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "4", "--batch-size", "4",
               "--max-length", "32", "--eval-every", "2"]
TINY = [*TINY_TARGET, "--prompt-length", "4"]
ONE = '{"sentence1": "A cat sat.", "sentence2": "An animal sat."}'


def run(*args, env=None, input=None):
    return runner.invoke(app, [str(a) for a in args], env=env, input=input)


@pytest.fixture(scope="module")
def world(tmp_path_factory, real_data_dir, tiny_causal_dir, tiny_t5_dir):
    """The registry (mnli@1, qqp@1 and target rte@1 over both), bad data folders and input files."""
    root = tmp_path_factory.mktemp("bad-inputs")
    registry = root / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    for step in (["source", "train", "mnli", "--backbone", tiny_causal_dir, *TINY],
                 ["source", "train", "qqp", *TINY],
                 ["target", "train", "rte", "--sources", "mnli,qqp", *TINY_TARGET]):
        result = run(*step, *common)
        assert result.exit_code == 0, result.output
    return {"root": root, "registry": registry, "data": real_data_dir, "t5": tiny_t5_dir,
            "tasks_dir": root / "tasks"}


def _rte_copy(world, name: str, edit) -> Path:
    """A data folder holding only glue/rte, with ``edit(lines) -> lines`` applied to every split."""
    folder = world["root"] / name
    if not folder.exists():
        shutil.copytree(world["data"] / "glue" / "rte", folder / "glue" / "rte")
        for split in (folder / "glue" / "rte").glob("*.jsonl"):
            lines = split.read_text(encoding="utf-8").splitlines()
            split.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    return folder


def _replace_row(number: int, change):
    """Edit the row on (1-based) line ``number``: ``change(row) -> row or raw text``."""
    def edit(lines):
        row = json.loads(lines[number - 1])
        new = change(row)
        lines[number - 1] = new if isinstance(new, str) else json.dumps(new)
        return lines
    return edit


def _without(field):
    def change(row):
        del row[field]
        return row
    return change


BAD_DATA = {  # data folder name -> (edit, fragments of the message)
    "malformed": (_replace_row(3, lambda row: json.dumps(row)[:-5]), ["train.jsonl:3", "malformed JSON"]),
    "first-line": (_replace_row(1, lambda row: "{" + json.dumps(row)), ["train.jsonl:1: malformed JSON", "column 2"]),
    "missing-field": (_replace_row(2, _without("sentence2")), ["train.jsonl:2", "missing field 'sentence2'"]),
    "label-yes": (_replace_row(4, lambda row: {**row, "label": "yes"}), ["train.jsonl:4", "label", "'yes'"]),
    "text-list": (_replace_row(5, lambda row: {**row, "sentence1": ["a", "list"]}),
                  ["train.jsonl:5", "field 'sentence1' must be text", "list"]),
    "not-object": (_replace_row(2, lambda row: "[1, 2]"), ["train.jsonl:2", "expected a JSON object"]),
}
BOM_BLANK = lambda lines: ["\ufeff" + lines[0], "", *lines[1:3], "   ", *lines[3:], ""]  # noqa: E731


def _bad_dev(world, name: str) -> Path:
    """Broken validation split only (what eval, attn show and study sources read)."""
    folder = world["root"] / f"dev-{name}"
    if not folder.exists():
        shutil.copytree(world["data"] / "glue" / "rte", folder / "glue" / "rte")
        dev = folder / "glue" / "rte" / "validation.jsonl"
        lines = dev.read_text(encoding="utf-8").splitlines()
        lines[1] = lines[1][:-5]
        dev.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _bad_mnli(world) -> Path:
    """mnli with a record cut in half on line 3 of train, and qqp intact (what attn pretrain reads)."""
    folder = world["root"] / "bad-mnli"
    if not folder.exists():
        for name in ("mnli", "qqp"):
            shutil.copytree(world["data"] / "glue" / name, folder / "glue" / name)
        train = folder / "glue" / "mnli" / "train.jsonl"
        lines = train.read_text(encoding="utf-8").splitlines()
        lines[2] = lines[2][:-5]
        train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _file(world, name: str, text: str) -> Path:
    path = world["root"] / name
    path.write_text(text, encoding="utf-8")
    return path


ADAPTERS = {"malformed": "{\n", "lora": '{"peft_type": "LORA"}\n'}  # adapter_config.json of each bad adapter


def _adapter(world, name: str) -> Path:
    folder = world["root"] / f"adapter-{name}"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(ADAPTERS[name], encoding="utf-8")
    return folder


# Each case: (args with {placeholders}, expected exit code, fragments of the output).
# {reg} = the registry, {data} = real data, {bad:NAME} = a data copy from BAD_DATA, {devbad} = a broken
# dev split, {bom} = BOM + blank lines, {t5} = another backbone, {empty} = a folder without data,
# {file:NAME} = an input file (see FILES), {adapter:NAME} = a bad PEFT adapter folder (see ADAPTERS),
# {backup} = a non-empty folder, {zoo} = the package's SmolLM2 zoo (one backbone's folder).
FILES = {
    "malformed.jsonl": ONE + "\n\n" + ONE + "\n{\"sentence1\": \"x\",\n",
    "bom.jsonl": "\ufeff" + ONE + "\n\n   \n" + ONE + "\n",
    "missing.jsonl": ONE + "\n" + '{"sentence1": "only one"}' + "\n",
    "list.jsonl": '{"sentence1": ["a"], "sentence2": "b"}\n',
    "array.jsonl": ONE + "\n[1, 2]\n",
    "empty.jsonl": "\n\n",
    "task.toml": 'name = "my_task"\n[input\ntemplate = "x"\n',
    "study.json": '{"cells": [\n',
    "array.json": "[1, 2]\n",
    "builtin.toml": 'name = "rte"\n',
}
TRAIN = ["--registry", "{reg}", "--max-steps", "1", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "4",
         "--batch-size", "4", "--max-length", "32"]
REG = ["--registry", "{reg}"]
CASES = {
    # source train
    "source: unknown task": (["source", "train", "nosuchtask", "--data-dir", "{data}", *TRAIN], 1,
                             ["unknown task 'nosuchtask'", "rte"]),
    "source: no data for the task": (["source", "train", "rte", "--data-dir", "{empty}", *TRAIN], 1, ["rte", "not found"]),
    **{f"source: {name}": (["source", "train", "rte", "--data-dir", f"{{bad:{name}}}", *TRAIN], 1, fragments)
       for name, (_, fragments) in BAD_DATA.items()},
    "source: data directory is a file": (["source", "train", "rte", "--data-dir", "{file:empty.jsonl}", *TRAIN], 1,
                                         ["empty.jsonl: not a directory", "--data-dir"]),
    "source: batch size 0": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--batch-size", "0"], 1,
                             ["batch-size"]),
    "source: unknown preset": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--preset", "huge"], 1,
                               ["huge"]),
    "source: negative weight decay": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--weight-decay",
                                       "-1"], 1, ["weight-decay must not be negative"]),
    "source: lr not a number (NaN)": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--lr", "nan"], 1,
                                      ["lr must be a finite number, got nan"]),
    "source: infinite weight decay": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--weight-decay",
                                       "inf"], 1, ["weight-decay must be a finite number"]),
    "source: lr not a number": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--lr", "fast"], 2,
                                ["--lr"]),
    "source: unknown option": (["source", "train", "rte", "--data-dir", "{data}", *TRAIN, "--epoch", "3"], 2,
                               ["--epoch"]),
    "source: missing task": (["source", "train", *TRAIN], 2, ["Missing argument"]),
    # target train
    "target: unknown source": (["target", "train", "cb", "--sources", "mnli,nosuch", "--data-dir", "{data}", *TRAIN],
                               1, ["nosuch"]),
    "target: unknown version": (["target", "train", "cb", "--sources", "mnli@9", "--data-dir", "{data}", *TRAIN], 1,
                                ["mnli@9"]),
    "target: bad version": (["target", "train", "cb", "--sources", "mnli@x", "--data-dir", "{data}", *TRAIN], 1,
                            ["mnli@x"]),
    "target: unknown task": (["target", "train", "nosuchtask", "--sources", "mnli", "--data-dir", "{data}", *TRAIN],
                             1, ["unknown task 'nosuchtask'"]),
    "target: wrong backbone": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                                "--backbone", "{t5}"], 1, ["mnli@1", "trained on backbone", "--backbone"]),
    "target: prompt length differs": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                                       "--prompt-length", "7"], 1, ["prompt"]),
    "target: G's rate NaN": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                              "--attn-lr", "nan"], 1, ["attn-lr must be a finite number"]),
    "target: a source listed twice": (["target", "train", "cb", "--sources", "mnli,qqp,mnli", "--data-dir", "{data}",
                                       *TRAIN], 1, ["source mnli is listed twice"]),
    "target: unknown variant": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                                 "--variant", "magic"], 1, ["magic"]),
    "target: unknown init": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                              "--init", "source:nosuch"], 1, ["nosuch"]),
    "target: unknown attention prior": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", *TRAIN,
                                         "--attn-prior", "nosuch"], 1, ["nosuch"]),
    "target: malformed data": (["target", "train", "rte", "--sources", "mnli", "--data-dir", "{bad:malformed}",
                                *TRAIN], 1, ["train.jsonl:3", "malformed JSON"]),
    "target: label yes": (["target", "train", "rte", "--sources", "mnli", "--data-dir", "{bad:label-yes}", *TRAIN],
                          1, ["train.jsonl:4", "'yes'"]),
    "target: resume without checkpoint": (["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}",
                                           *TRAIN, "--resume"], 1, ["checkpoint"]),
    # target compose
    "compose: unknown target": (["target", "compose", "nosuch", "--remove", "qqp", *REG], 1, ["nosuch"]),
    "compose: unknown version": (["target", "compose", "rte@9", "--remove", "qqp", *REG], 1, ["rte@9"]),
    "compose: add unknown source": (["target", "compose", "rte", "--add", "nosuch", *REG], 1, ["nosuch"]),
    "compose: remove a source it lacks": (["target", "compose", "rte", "--remove", "cb", *REG], 1, ["cb"]),
    "compose: nothing to change": (["target", "compose", "rte", *REG], 1, ["--add"]),
    "compose: train steps 0": (["target", "compose", "rte", "--remove", "qqp", "--train-steps", "0", *REG], 2,
                               ["--train-steps"]),
    "compose: wrong backbone": (["target", "compose", "rte", "--remove", "qqp", "--train-steps", "1", "--backbone",
                                 "{t5}", "--data-dir", "{data}", *REG], 1, ["backbone"]),
    # attn pretrain
    "pretrain: unknown source": (["attn", "pretrain", "--sources", "mnli,nosuch", "--data-dir", "{data}", *TRAIN], 1,
                                 ["nosuch"]),
    "pretrain: unknown version": (["attn", "pretrain", "--sources", "mnli@9,qqp", "--data-dir", "{data}", *TRAIN], 1,
                                  ["mnli@9"]),
    "pretrain: no sources": (["attn", "pretrain", "--data-dir", "{data}", *TRAIN], 1, ["--sources"]),
    "pretrain: malformed data": (["attn", "pretrain", "--sources", "mnli,qqp", "--data-dir", "{badmnli}", *TRAIN],
                                 1, ["mnli/train.jsonl:3", "malformed JSON"]),
    # attn show
    "attn show: unknown target": (["attn", "show", "nosuch", "--data-dir", "{data}", *REG], 1, ["nosuch"]),
    "attn show: unknown version": (["attn", "show", "rte@9", "--data-dir", "{data}", *REG], 1, ["rte@9"]),
    "attn show: unknown format": (["attn", "show", "rte", "--format", "svg", *REG], 2, ["svg"]),
    "attn show: png without output": (["attn", "show", "rte", "--format", "png", *REG], 2, ["--output"]),
    "attn show: unknown split": (["attn", "show", "rte", "--split", "train2", "--data-dir", "{data}", *REG], 1,
                                 ["train2"]),
    "attn show: malformed dev data": (["attn", "show", "rte", "--data-dir", "{devbad}", *REG], 1,
                                      ["validation.jsonl:2", "malformed JSON"]),
    # eval
    "eval: unknown prompt": (["eval", "nosuch", "--data-dir", "{data}", *REG], 1, ["nosuch"]),
    "eval: unknown version": (["eval", "mnli@9", "--data-dir", "{data}", *REG], 1, ["mnli@9"]),
    "eval: unknown split": (["eval", "rte", "--split", "train2", "--data-dir", "{data}", *REG], 1, ["train2"]),
    "eval: unknown decode": (["eval", "rte", "--decode", "beam", "--data-dir", "{data}", *REG], 1, ["beam"]),
    "eval: limit 0": (["eval", "rte", "--limit", "0", "--data-dir", "{data}", *REG], 2, ["--limit"]),
    "eval: wrong backbone": (["eval", "rte", "--limit", "2", "--backbone", "{t5}", "--data-dir", "{data}", *REG], 1,
                             ["backbone"]),
    "eval: malformed dev data": (["eval", "rte", "--split", "dev", "--data-dir", "{devbad}", *REG], 1,
                                 ["validation.jsonl:2", "malformed JSON"]),
    "eval: label yes": (["eval", "rte", "--split", "dev", "--data-dir", "{bad:label-yes}", *REG], 1, ["'yes'"]),
    # predict
    "predict: malformed file line": (["predict", "rte", "--file", "{file:malformed.jsonl}", *REG], 1,
                                     ["malformed.jsonl:4:", "malformed JSON"]),
    "predict: missing field": (["predict", "rte", "--file", "{file:missing.jsonl}", *REG], 1,
                               ["missing.jsonl:2", "missing field", "sentence2"]),
    "predict: list as text": (["predict", "rte", "--file", "{file:list.jsonl}", *REG], 1,
                              ["list.jsonl:1", "sentence1", "list"]),
    "predict: array row": (["predict", "rte", "--file", "{file:array.jsonl}", *REG], 1,
                           ["array.jsonl:2", "expected a JSON object"]),
    "predict: only blank lines": (["predict", "rte", "--file", "{file:empty.jsonl}", *REG], 1, ["no input"]),
    "predict: file not found": (["predict", "rte", "--file", "{empty}/nope.jsonl", *REG], 1, ["nope.jsonl", "not found"]),
    "predict: argument and file": (["predict", "rte", ONE, "--file", "{file:bom.jsonl}", *REG], 2, ["not both"]),
    "predict: malformed argument": (["predict", "rte", "{not json", *REG], 1, ["argument:1:2: malformed JSON"]),
    "predict: unknown prompt": (["predict", "nosuch", ONE, *REG], 1, ["nosuch"]),
    "predict: unknown version": (["predict", "rte@9", ONE, *REG], 1, ["rte@9"]),
    "predict: wrong backbone": (["predict", "rte", ONE, "--backbone", "{t5}", *REG], 1, ["backbone"]),
    "predict: unknown decode": (["predict", "rte", ONE, "--decode", "beam", *REG], 1, ["beam"]),
    # study sources
    "study: unknown target": (["study", "sources", "nosuch", "--sources", "mnli", "--data-dir", "{data}", *REG], 1,
                              ["nosuch"]),
    "study: unknown version": (["study", "sources", "rte@9", "--sources", "mnli", "--data-dir", "{data}", *REG], 1,
                               ["rte@9"]),
    "study: unknown source": (["study", "sources", "rte", "--sources", "mnli,nosuch", "--data-dir", "{data}", *REG],
                              1, ["nosuch"]),
    "study: no sources": (["study", "sources", "rte", "--data-dir", "{data}", *REG], 1, ["--sources"]),
    "study: unknown split": (["study", "sources", "rte", "--sources", "mnli", "--split", "x", "--data-dir", "{data}",
                              *REG], 1, ["'x'"]),
    "study: limit 0": (["study", "sources", "rte", "--sources", "mnli", "--limit", "0", *REG], 2, ["--limit"]),
    "study: malformed dev data": (["study", "sources", "rte", "--sources", "mnli", "--data-dir", "{devbad}", *REG],
                                  1, ["validation.jsonl:2", "malformed JSON"]),
    # source import
    "import: folder not found": (["source", "import", "{empty}/nope", "--task", "mnli", *REG], 1,
                                 ["nope", "no such adapter folder"]),
    "import: not an adapter": (["source", "import", "{empty}", "--task", "mnli", *REG], 1,
                               ["adapter_config.json", "missing", "save_pretrained"]),
    "import: malformed adapter config": (["source", "import", "{adapter:malformed}", "--task", "mnli", *REG], 1,
                                         ["adapter_config.json:2:1", "not valid JSON"]),
    "import: not prompt tuning": (["source", "import", "{adapter:lora}", "--task", "mnli", *REG], 1,
                                  ["LORA adapter", "PROMPT_TUNING"]),
    "import: unknown task": (["source", "import", "{adapter:lora}", "--task", "nosuchtask", *REG], 1,
                             ["unknown task 'nosuchtask'"]),
    "import: unknown labels": (["source", "import", "{adapter:lora}", "--task", "mnli", "--labels", "digits", *REG],
                               1, ["unknown labels 'digits'", "words, index"]),
    "import: missing task": (["source", "import", "{adapter:lora}", *REG], 2, ["--task"]),
    # source pull
    "pull: registry on another backbone": (["source", "pull", "--backbone", "smollm2-135m", *REG], 1,
                                           ["holds prompts for backbone", "mnli@1"]),
    "pull: the registry's backbone has no zoo": (["source", "pull", *REG], 1,
                                                 ["no source prompt zoo for backbone", "smollm2-135m"]),
    "pull: unknown zoo source": (["source", "pull", "--tasks", "nosuch", "--backbone", "smollm2-135m", *REG], 1,
                                 ["no prompt for nosuch", "mnli"]),
    "pull: unknown labels": (["source", "pull", "--labels", "digits", *REG], 1, ["unknown labels 'digits'"]),
    "pull: backbone without a zoo": (["source", "pull", "--backbone", "t5-base", *REG], 1,
                                     ["no source prompt zoo for backbone 't5-base'", "source train"]),
    "pull: zoo folder missing": (["source", "pull", "--zoo", "{empty}/nosuch", *REG], 1,
                                 ["zoo folder", "nosuch does not exist", "attemptctl/zoo"]),
    "pull: zoo folder is a file": (["source", "pull", "--zoo", "{zoo}/manifest.json", *REG], 1,
                                   ["manifest.json is not a folder", "attemptctl/zoo"]),
    "pull: zoo folder is one backbone's zoo": (["source", "pull", "--zoo", "{zoo}", *REG], 1,
                                               ["is one backbone's zoo", "the folder above it"]),
    "pull: zoo folder without the backbone": (["source", "pull", "--zoo", "{empty}", "--backbone", "smollm2-135m",
                                               *REG], 1,
                                              ["has no zoo for backbone 'smollm2-135m'", "(its backbones: none)"]),
    # registry export
    "export: unknown name": (["registry", "export", "nosuch", "-o", "{empty}/out", *REG], 1, ["nosuch"]),
    "export: unknown version": (["registry", "export", "mnli@9", "-o", "{empty}/out", *REG], 1, ["mnli@9"]),
    "export: an attempt target": (["registry", "export", "rte", "-o", "{empty}/out", *REG], 1, ["rte@1", "attempt"]),
    "export: unknown format": (["registry", "export", "mnli", "--format", "onnx", "-o", "{empty}/out", *REG], 1,
                               ["unknown export format 'onnx'", "peft"]),
    "export: non-empty output": (["registry", "export", "mnli", "-o", "{backup}", *REG], 1, ["not an empty folder"]),
    "export: missing output": (["registry", "export", "mnli", *REG], 2, ["--output"]),
    # study methods
    "methods: unknown target": (["study", "methods", "nosuchtask", "--sources", "mnli", "--data-dir", "{data}",
                                 *TRAIN], 1, ["unknown task 'nosuchtask'"]),
    "methods: unknown method": (["study", "methods", "cb", "--sources", "mnli", "--methods", "magic", "--data-dir",
                                 "{data}", *TRAIN], 1, ["unknown method 'magic'", "attempt"]),
    "methods: unknown source": (["study", "methods", "cb", "--sources", "mnli,nosuch", "--data-dir", "{data}", *TRAIN],
                                1, ["nosuch"]),
    "methods: no sources": (["study", "methods", "cb", "--data-dir", "{data}", *TRAIN], 1, ["--sources"]),
    "methods: shots 0": (["study", "methods", "cb", "--sources", "mnli", "--shots", "0", "--data-dir", "{data}",
                          *TRAIN], 1, ["--shots"]),
    "methods: seeds not numbers": (["study", "methods", "cb", "--sources", "mnli", "--seeds", "a", "--data-dir",
                                    "{data}", *TRAIN], 2, ["--seeds", "integers"]),
    # study show
    "study show: unknown study": (["study", "show", "nosuch", *REG], 1, ["no finished cell of study 'nosuch'"]),
    "study show: export not found": (["study", "show", "x", "--from", "{empty}/nope.json", *REG], 1,
                                     ["nope.json does not exist"]),
    "study show: malformed export": (["study", "show", "x", "--from", "{file:study.json}", *REG], 1,
                                     ["study.json is not readable JSON"]),
    "study show: not a study export": (["study", "show", "x", "--from", "{file:array.json}", *REG], 1,
                                       ["array.json is not a study export"]),
    # task list
    "task list: data directory not found": (["task", "list", "--data-dir", "{empty}/nope"], 1,
                                            ["nope: data directory not found"]),
    "task show: data directory not found": (["task", "show", "rte", "--data-dir", "{empty}/nope"], 1,
                                            ["nope: data directory not found"]),
    # registry list / show / rm / verify / backup / upgrade
    "registry list: unknown kind": (["registry", "list", "--kind", "prompt", *REG], 1, ["prompt"]),
    "registry show: unknown name": (["registry", "show", "nosuch", *REG], 1, ["nosuch"]),
    "registry show: unknown version": (["registry", "show", "mnli@9", *REG], 1, ["mnli@9"]),
    "registry show: bad version": (["registry", "show", "mnli@x", *REG], 1, ["mnli@x"]),
    "registry show: missing name": (["registry", "show", *REG], 2, ["Missing argument"]),
    "registry rm: unknown name": (["registry", "rm", "nosuch", *REG], 1, ["nosuch"]),
    "registry rm: a source named without --kind": (["registry", "rm", "qqp", *REG], 1,
                                                   ["no target prompt 'qqp'", "registered as a source: add --kind source"]),
    "registry rm: unknown version": (["registry", "rm", "mnli@9", "--kind", "source", *REG], 1, ["mnli@9"]),
    "registry rm: a source in use": (["registry", "rm", "mnli", "--kind", "source", *REG], 1, ["rte@1"]),
    "registry rm: unknown kind": (["registry", "rm", "mnli", "--kind", "prompt", *REG], 1, ["prompt"]),
    "registry verify: unknown option": (["registry", "verify", "--repair", *REG], 2, ["--repair"]),
    "registry backup: non-empty destination": (["registry", "backup", "{backup}", *REG], 1,
                                               ["exists and is not empty"]),
    "registry backup: missing path": (["registry", "backup", *REG], 2, ["Missing argument"]),
    "registry upgrade: unknown option": (["registry", "upgrade", "--fix", *REG], 2, ["--fix"]),
    # task show / add / rm
    "task show: unknown task": (["task", "show", "nosuchtask"], 1, ["unknown task 'nosuchtask'"]),
    "task show: malformed data": (["task", "show", "rte", "--data-dir", "{bad:first-line}"], 1,
                                  ["validation.jsonl:1: malformed JSON", "column 2"]),
    "task add: file not found": (["task", "add", "{empty}/nope.toml"], 1, ["nope.toml"]),
    "task add: invalid TOML": (["task", "add", "{file:task.toml}"], 1, ["task.toml:", "invalid TOML"]),
    "task add: built-in name": (["task", "add", "{file:builtin.toml}"], 1, ["built-in"]),
    "task rm: unknown task": (["task", "rm", "nosuchtask"], 1, ["nosuchtask"]),
    "task rm: built-in task": (["task", "rm", "rte"], 1, ["built-in"]),
}
ACCEPTED = {  # a BOM and blank lines are fine: exit 0, nothing written
    "predict: BOM and blank lines": ["predict", "rte", "--file", "{file:bom.jsonl}", "--json", *REG],
    "study: BOM and blank lines": ["study", "sources", "rte", "--sources", "mnli", "--limit", "2", "--data-dir", "{bom}",
                                   "--json", *REG],
    "task show: BOM and blank lines": ["task", "show", "rte", "--data-dir", "{bom}"],
    "registry verify: clean": ["registry", "verify", *REG],
}


def _expand(world, args: list[str]) -> list[str]:
    empty = world["root"] / "empty"
    empty.mkdir(exist_ok=True)
    backup = world["root"] / "backup"
    backup.mkdir(exist_ok=True)
    (backup / "keep.txt").write_text("x")
    from attemptctl.zoo import PACKAGE_ZOO

    values = {"reg": world["registry"], "data": world["data"], "t5": world["t5"], "empty": empty, "backup": backup,
              "zoo": PACKAGE_ZOO / "smollm2-135m"}
    expanded = []
    for arg in args:
        if arg.startswith("{bad:"):
            name = arg[5:-1]
            arg = str(_rte_copy(world, f"bad-{name}", BAD_DATA[name][0]))
        elif arg == "{devbad}":
            arg = str(_bad_dev(world, "malformed"))
        elif arg == "{badmnli}":
            arg = str(_bad_mnli(world))
        elif arg == "{bom}":
            arg = str(_rte_copy(world, "bom", BOM_BLANK))
        elif arg.startswith("{adapter:"):
            arg = str(_adapter(world, arg[9:-1]))
        elif arg.startswith("{file:"):
            name = arg[6:-1]
            arg = str(_file(world, name, FILES[name]))
        elif arg.startswith("{") and arg[1:].split("}", 1)[0] in values:
            key, rest = arg[1:].split("}", 1)
            arg = f"{values[key]}{rest}"
        expanded.append(arg)
    return expanded


def _snapshot(world) -> tuple:
    """Every file under the registry (and custom tasks) with its bytes' size, and every row of every table."""
    files = []
    for folder in (world["registry"], world["tasks_dir"]):
        if folder.exists():
            files += sorted((str(p), p.read_bytes()) for p in folder.rglob("*")
                            if p.is_file() and not p.name.startswith("catalog.sqlite"))
    with sqlite3.connect(world["registry"] / "catalog.sqlite") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    return files, rows


def _invoke(world, args):
    env = {"ATTEMPTCTL_TASKS_DIR": str(world["tasks_dir"]), "COLUMNS": "400", "NO_COLOR": "1"}
    return run(*_expand(world, args), env=env)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_as_documented_and_writes_nothing(world, case):
    args, code, fragments = CASES[case]
    before = _snapshot(world)
    result = _invoke(world, args)
    output = result.output
    assert "Traceback" not in output and "internal error" not in output, output
    assert result.exit_code == code, f"exit {result.exit_code}: {output}"
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in {output!r}"
    if code == 1:  # exactly one line: no blank line around it (a progress bar stopped before it started)
        assert output.startswith("error:") and output.endswith("\n") and output.count("\n") == 1, repr(output)
    assert _snapshot(world) == before


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_bom_and_blank_lines_are_accepted(world, case):
    before = _snapshot(world)
    result = _invoke(world, ACCEPTED[case])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert _snapshot(world) == before


READERS = {  # commands that only read prompts: a path holding no registry is refused, and nothing is created there
    "eval": ["eval"], "attn show": ["attn", "show"], "registry list": ["registry", "list"],
    "registry show": ["registry", "show", "mnli"], "registry verify": ["registry", "verify"],
    "study show": ["study", "show", "methods-rte"], "predict": ["predict", "rte", "--file", "{file:bom.jsonl}"],
    "study sources": ["study", "sources", "rte", "--sources", "mnli", "--data-dir", "{data}"],
    "target compose": ["target", "compose", "rte", "--add", "qqp", "--data-dir", "{data}"],
}


@pytest.mark.parametrize("case", list(READERS))
def test_a_reading_command_refuses_a_path_without_a_registry(world, case, tmp_path):
    missing = tmp_path / "typo" / "registry"
    result = _invoke(world, [*READERS[case], "--registry", str(missing)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: no registry at {missing}; check --registry") and \
        result.output.count("\n") == 1, repr(result.output)
    assert not (tmp_path / "typo").exists()


def test_mixing_sources_from_a_registry_without_any_points_to_source_pull(world, tmp_path):
    result = _invoke(world, ["target", "train", "cb", "--sources", "mnli", "--data-dir", "{data}", "--registry",
                             str(tmp_path / "fresh"), *TRAIN[2:]])
    assert result.exit_code == 1, result.output
    assert "has no source prompts" in result.output and "attemptctl source pull" in result.output, result.output
