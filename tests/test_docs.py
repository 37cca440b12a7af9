"""Every relative link in README.md and docs/**/*.md resolves: the file exists inside the
repository, and a #fragment names a heading of its target (GitHub's slugs)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
# [text](target "title") and ![alt](target); the text may hold one level of brackets
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)[^)]*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _prose(text: str) -> str:
    """The text without code: links shown in code are examples, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than
    '-' and '_' removed, each space a '-' (so "45k/5k" -> "45k5k", "a -- b" -> "a----b")."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>|[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The #fragments a markdown file answers to; a repeated heading gets -1, -2, ..."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(EXPLICIT_ANCHOR.findall(text))
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def link_problem(source: Path, target: str, root: Path = ROOT) -> str | None:
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    target = target.strip("<>")
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
        return None  # a URL (https:, mailto:): not checked offline
    path_part, _, fragment = target.partition("#")
    dest = (source.parent / path_part).resolve() if path_part else source
    if not dest.is_relative_to(root):
        return "points outside the repository"
    if not dest.exists():
        return "no such file"
    if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
        return f"no heading with anchor #{fragment} in {dest.relative_to(root)}"
    return None


def broken_links(paths: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in paths:
        prose = _prose(path.read_text(encoding="utf-8"))
        for target in INLINE_LINK.findall(prose) + REFERENCE_DEF.findall(prose):
            why = link_problem(path, target, root)
            if why:
                problems.append(f"{path.relative_to(root)}: ({target}) {why}")
    return problems


def test_docs_links_resolve() -> None:
    assert len(DOCS) > 2 and (ROOT / "docs" / "benchmarks.md") in DOCS
    assert broken_links(DOCS) == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "5. Time to accuracy on the CIFAR-10 JPEG 45k/5k split",
            "5-time-to-accuracy-on-the-cifar-10-jpeg-45k5k-split",
        ),
        (
            "1b. bf16 autocast on a CPU with AMX (2026-11-30)",
            "1b-bf16-autocast-on-a-cpu-with-amx-2026-11-30",
        ),
        (
            "`reslab train --cuda-graphs` (H200, 2026-11-26)",
            "reslab-train---cuda-graphs-h200-2026-11-26",
        ),
        ("How `cifar-speedrun` was chosen", "how-cifar-speedrun-was-chosen"),
        ("**Bold** and [a link](x.md)", "bold-and-a-link"),
    ],
)
def test_slug_is_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    """The checker fails on a missing file, a missing heading and a path out of the tree,
    and ignores links inside code."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "benchmarks.md").write_text("# B\n", encoding="utf-8")
    doc = tmp_path / "docs" / "probe.md"
    doc.write_text(
        "# Top\n\n[ok](#top) [ok](benchmarks.md) [url](https://example.com/x)\n"
        "[gone](no-such-file.md) [bad anchor](#nowhere) [out](../outside.md)\n"
        "`[in code](missing.md)`\n\n```\n[in a fence](missing.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links([doc], root=tmp_path / "docs")
    assert len(problems) == 3, problems
    assert "no-such-file.md) no such file" in problems[0]
    assert "#nowhere" in problems[1] and "outside the repository" in problems[2]


def _code_block_after(text: str, heading: str) -> list[str]:
    """The command lines of the first ```bash block under `## heading`."""
    section = text.split(f"\n## {heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readmes_set_up_and_test_commands_as_printed() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for heading in ("Set-up", "Test"):
        for line in _code_block_after(readme, heading):
            assert line in ci, f"README's {heading} line is not in .ci/run: {line}"
