"""Rerun the README's quick start in a fresh registry and write its transcript into docs/quickstart.md.

    python recipes/quickstart.py --data-dir DIR           # run, then rewrite the transcript block
    python recipes/quickstart.py --data-dir DIR --print   # run and print it; the docs stay as they are

Each command runs as a user would type it (``attemptctl ...`` through the installed package, 80
columns, the default ``cpu`` preset) in a registry made for this run. Its stdout is kept with
trailing blanks cut, and its dev-check lines from stderr; progress bars are left out. A
``# N s wall`` line follows each command. The transcript replaces the fenced block after the
``<!-- quickstart-transcript -->`` marker. Run it with nothing else on the machine: the wall times
are part of what it reports.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
MARKER = "<!-- quickstart-transcript -->"
#: The README's quick start with its `--examples` view, then a second target (RTE), every target's view,
#: the registry listing, and the README's transfer example: ATTEMPT against PT on Yelp review sentences
#: over the whole zoo, beside the constant answer.
COMMANDS = (
    "source pull",
    "target train boolq --sources mnli,qqp",
    "attn show boolq",
    "attn show boolq --examples 2",
    "eval",
    "target train rte --sources mnli,qqp",
    "attn show",
    "registry list",
    "study methods yelp --sources mnli,qqp,qnli,sst2,squad --methods pt,attempt",
)


def transcript(data_dir: str) -> str:
    with tempfile.TemporaryDirectory(prefix="attemptctl-quickstart-") as registry:
        env = {**os.environ, "ATTEMPTCTL_REGISTRY": registry, "ATTEMPTCTL_DATA_DIR": data_dir, "COLUMNS": "80",
               "PYTHONWARNINGS": "ignore"}
        lines = []
        for command in COMMANDS:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "attemptctl.cli", *command.split()], check=False, env=env,
                                  text=True, capture_output=True)
            wall = time.perf_counter() - started
            if done.returncode:
                sys.exit(f"`attemptctl {command}` exited {done.returncode}: {done.stderr.strip()[-2000:]}")
            # the dev checks print on stderr beside the progress bar, before the stdout summary
            checks = [line for line in done.stderr.splitlines() if re.match(r"step \d+: ", line)]
            lines += [f"$ attemptctl {command}", *checks,
                      *(line.rstrip() for line in done.stdout.rstrip("\n").splitlines()), f"# {wall:.0f} s wall"]
            print(lines[-1].replace("#", f"attemptctl {command}:", 1), file=sys.stderr, flush=True)
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if MARKER not in doc:
        sys.exit(f"{DOC} has no {MARKER} line to put the transcript after")
    head, tail = doc.split(MARKER, 1)
    opening = tail.index("```\n")
    closing = tail.index("```\n", opening + 4)
    DOC.write_text(head + MARKER + tail[:opening] + "```\n" + text + tail[closing:])
    print(f"wrote the transcript into {DOC.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="Folder of datasets in the Hugging Face layout.")
    parser.add_argument("--print", action="store_true", help="Print the transcript instead of writing the docs.")
    args = parser.parse_args()
    text = transcript(args.data_dir)
    if args.print:
        print(text, end="")
    else:
        write_doc(text)


if __name__ == "__main__":
    main()
