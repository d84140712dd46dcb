"""The documents: every relative link in the repository's Markdown points at a file or folder
that exists, and README.md stays a short page that keeps the two commands CI and users copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The Markdown a user reads: the README, the guides and decision records, the benchmark
# results, and the notes beside the search spaces and the cluster files.
DOC_GLOBS = ("README.md", "docs/**/*.md", "benchmarks/*.md", "search_spaces/**/*.md", "cluster/**/*.md")

MAIN_JOB = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
            "&& python ray_jobs/tune.py")
TESTS = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[dev]' "
         "&& python -m pytest")
FAST_LANE = 'python -m pytest -m "not slow"'
README_MAX_LINES = 200

# [text](target) or [text](target "title"); images too. Code spans and fenced blocks are
# removed first, so a link-like example in code is not a link.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`+[^`\n]*`+")
EXTERNAL = re.compile(r"^(https?:|mailto:)", re.I)


def documents() -> list[Path]:
    found = {p for pattern in DOC_GLOBS for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(p for p in found if not {".venv", ".git"} & set(p.relative_to(ROOT).parts))


def relative_links(text: str) -> list[str]:
    """Each relative link target of a Markdown text, its #anchor stripped."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    out = []
    for target in LINK.findall(text):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def broken_links(doc: Path) -> list[str]:
    return [target for target in relative_links(doc.read_text(encoding="utf-8"))
            if not (doc.parent / target).exists()]


def test_the_documents_are_found():
    names = {str(p.relative_to(ROOT)) for p in documents()}
    assert {"README.md", "benchmarks/RESULTS.md", "docs/testing.md", "cluster/README.md",
            "search_spaces/ablations/README.md"} <= names, names


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert not broken_links(doc), f"{doc.relative_to(ROOT)}: links to missing files: {broken_links(doc)}"


def test_a_broken_link_is_caught(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](doc.md) [gone](missing.md#part) [web](https://example.com) [here](#top)\n"
                   "`[code](nowhere.md)`\n```\n[block](nowhere.md)\n```\n")
    assert broken_links(doc) == ["missing.md"]


def test_the_readme_is_short_and_keeps_its_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in (MAIN_JOB, TESTS, FAST_LANE):
        assert command in text, f"README.md lost the command: {command}"
