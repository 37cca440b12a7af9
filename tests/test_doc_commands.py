"""Every `reslab ...` command in README.md and docs/**/*.md parses with reslab's own
argument parser, as printed: a missing required flag, a renamed one or a machine's own
path fails here, not in a reader's shell.

A command is a line of a fenced code block that starts with `reslab` (after a `$ `
prompt or environment assignments; `torchrun ... -m reslab` too), backslash
continuations joined, or an inline code span that does. Synopses are not commands and
are skipped: spans or lines with `[`, `|` or `...` (`reslab eval RUN --split val|test
[--ten-crop]`), and a bare command name in prose (`reslab report`). Paths are
placeholders (DATA, OUT, RUN...), never a machine's folders."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from reslab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n(.*?)^ {0,3}\1", re.M | re.S)
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")  # a span may wrap lines
START = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*(?:.*?-m )?(reslab [a-z][a-z-]*(?: .*)?)$")
SYNOPSIS = re.compile(r"\[|\||\.\.\.|…")
MACHINE_PATHS = re.compile(r"/work/|\.\./shared|/tmp/|~/")


def commands(text: str) -> list[str]:
    found = []
    for _, block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip())
            m = START.match(line)
            if m and not SYNOPSIS.search(line):
                found.append(m[1])
    prose = FENCE.sub("", text)
    for span in SPAN.findall(prose):
        span = " ".join(span.split())
        m = START.match(span)
        if m and len(m[1].split()) > 2 and not SYNOPSIS.search(span):
            found.append(m[1])
    return found


CASES = [(p.relative_to(ROOT), c) for p in DOCS for c in commands(p.read_text(encoding="utf-8"))]


def test_the_docs_hold_commands() -> None:
    assert len(CASES) > 10 and any(c.startswith("reslab reproduce") for _, c in CASES)


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d}: {c[:60]}" for d, c in CASES])
def test_command_parses_as_printed(doc: Path, command: str) -> None:
    if doc.name != "report.md":  # a report's header quotes the command it records, verbatim
        assert not MACHINE_PATHS.search(command), f"{doc}: a machine's path in `{command}`"
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:  # --help exits 0
        assert e.code == 0, f"{doc}: `{command}` does not parse (exit {e.code})"


def test_a_broken_command_is_found() -> None:
    text = (
        "```bash\nreslab reproduce degradation --budget cpu\n```\n`reslab train --no-such-flag 1`"
    )
    cmds = commands(text + "\n`reslab eval RUN --split val|test` and `reslab report`\n")
    assert cmds == ["reslab reproduce degradation --budget cpu", "reslab train --no-such-flag 1"]
    for c in cmds:
        with pytest.raises(SystemExit):
            build_parser().parse_args(shlex.split(c)[1:])
