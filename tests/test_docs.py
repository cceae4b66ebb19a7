"""The documentation site (docs/, mkdocs.yml): every ```python block of every page runs as written,
every page is in the site's navigation, and the README's links into the repository resolve.

The blocks run as the README's do (tests/markdown_blocks.py: the same prelude of stand-ins, the
same conventions, warnings as errors). CI also builds the site with `mkdocs build --strict`
(.ci/run), which fails on a broken link or anchor between pages or a docstring it cannot parse.
"""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

import fastgp  # noqa: F401  (imported here: its one-time warning when the extension is not built is not a block's)
from markdown_blocks import ROOT, block_id, block_marks, file_blocks, run_block

DOCS = os.path.join(ROOT, "docs")
PAGES = sorted(glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True))
BLOCKS = [block for page in PAGES for block in file_blocks(page)]


def test_the_docs_have_python_blocks():
    # Guards the scanner and the move out of the README: the guide pages' examples (lazy R1 and
    # AMP, the latent path, jvp under torch.compile, losses, diagnostics, spectral norm and its
    # legacy API, translation, CR and ADA, FAR, combinations, correction, LeCam and top-k) are found.
    pages = {os.path.relpath(path, DOCS) for path, _, _, _ in BLOCKS}
    assert {"penalties.md", "spectral-norm.md", "augmentation.md", "selection.md", "losses.md"} <= pages
    codes = [code for _, _, _, code in BLOCKS]
    assert len(codes) >= 15
    for needle in ("torch.autocast", 'method="jvp"', "latent_path_penalty", "fastgp.nn.utils import spectral_norm",
                   "AdaptiveAugment", "FakeAsReal", "replace_realistic", "LeCam", "diagnostics.jacobian_norm"):
        assert any(needle in code for code in codes), needle


@block_marks
@pytest.mark.parametrize("block", BLOCKS, ids=[block_id(b) for b in BLOCKS])
def test_docs_block_runs(block):
    path, start, _, code = block
    run_block(path, start, code)


def fenced_blocks(path: str, language: str) -> list[str]:
    """The contents of every ```<language> block of a Markdown file, as written (indentation kept)."""
    with open(path, encoding="utf-8") as f:
        return re.findall(rf"^[ \t]*```{language}[ \t]*\n(.*?)^[ \t]*```", f.read(), flags=re.S | re.M)


def test_the_install_page_has_the_readme_commands():
    # The README's install commands (install and run, install and test: the one CI runs) are the
    # ones the install page explains: an edit to one that the other misses fails here.
    readme = fenced_blocks(os.path.join(ROOT, "README.md"), "bash")
    install = fenced_blocks(os.path.join(DOCS, "install.md"), "bash")
    commands = [block for block in readme if "pip install" in block and "python3 -m venv" in block]
    assert len(commands) == 2, commands
    for block in commands:
        assert block in install, f"docs/install.md lacks the README's commands:\n{block}"


def _nav_pages(entry) -> list[str]:
    """Every page a mkdocs `nav` entry names (a page, {title: page} or {title: [entries]})."""
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, list):
        return [page for item in entry for page in _nav_pages(item)]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in _nav_pages(value)]
    raise AssertionError(f"mkdocs.yml: unexpected nav entry {entry!r}")


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    nav = _nav_pages(config["nav"])
    pages = {os.path.relpath(page, DOCS).replace(os.sep, "/") for page in PAGES}
    assert sorted(pages - set(nav)) == [], "docs pages missing from mkdocs.yml's nav"
    assert sorted(set(nav) - pages) == [], "mkdocs.yml's nav names pages that do not exist"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(path: str) -> set[str]:
    """The anchors of a Markdown file's headings (outside fenced blocks)."""
    slugs, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif not fenced and re.match(r"#{1,6} ", line):
                slugs.add(github_slug(line.lstrip("#")))
    return slugs


def broken_links(path: str) -> list[str]:
    """The relative links and images of a Markdown file whose target file or heading is missing."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # links inside code blocks are code
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif anchor and resolved.endswith(".md") and anchor not in headings(resolved):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(resolved, ROOT)}")
    return broken


def test_readme_links_resolve():
    # Every link of the README into the repository (docs pages, their headings, pictures, files)
    # points at something that exists, as GitHub and PyPI render it.
    readme = os.path.join(ROOT, "README.md")
    with open(readme, encoding="utf-8") as f:
        assert "](docs/" in f.read(), "the README links to no docs page"
    assert broken_links(readme) == []


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## A `code` heading: yes\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](docs/page.md) [ok](docs/page.md#a-code-heading-yes) [web](https://x.org/y)\n"
                      "[gone](docs/missing.md) [bad](docs/page.md#nowhere)\n```bash\n[no](in/code)\n```\n")
    assert broken_links(str(readme)) == ["docs/missing.md: no such file",
                                         "docs/page.md#nowhere: no heading #nowhere in " + os.path.relpath(
                                             str(tmp_path / "docs" / "page.md"), ROOT)]


VERDICT_WORDS = ("reproduced in part", "not reproduced", "not testable here", "reproduced")


def page_verdict(page: str) -> str:
    """The verdict word a docs/repro page states: its judged verdict (round 3, ``**Verdict: …**``) or
    the recorded verdict of an earlier round (``Verdict (recorded full run): …``)."""
    with open(page, encoding="utf-8") as f:
        match = re.search(r"Verdict(?: \(recorded full run\))?: (" + "|".join(VERDICT_WORDS) + ")", f.read())
    assert match, f"{os.path.relpath(page, ROOT)} states no verdict"
    return match.group(1)


def readme_reproduction_rows() -> list[list[str]]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("\n## Reproductions\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after the header and |---|
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_readme_reproduction_table_has_one_row_per_page_and_its_verdict():
    # One row per tested claim, each linking the page of its experiment, with the verdict that page
    # states (the README cannot say "reproduced" where the run said "in part").
    rows = readme_reproduction_rows()
    pages = sorted(p for p in glob.glob(os.path.join(DOCS, "repro", "*.md")))
    linked = []
    for row in rows:
        (target,) = re.findall(r"\]\((docs/repro/[^)#]+\.md)\)", " ".join(row)) or [None]
        assert target, f"README reproduction row links no docs/repro page: {row}"
        linked.append(os.path.join(ROOT, target))
        stated = next((w for w in VERDICT_WORDS if row[-1].strip("*").startswith(w)), None)
        assert stated == page_verdict(os.path.join(ROOT, target)), (row, target)
    assert sorted(linked) == pages  # every page has its row, and no page two
