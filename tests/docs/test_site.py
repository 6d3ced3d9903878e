"""The documentation site builds with warnings as errors, has an entry for every config key and
every registered id, and its internal links resolve (docs/, issue 21)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import splitexit
from splitexit.envs import default_config

DOCS = Path(__file__).resolve().parents[2] / "docs"
# What the build writes into the source folder, and its output: not copied.
NOT_COPIED = ("_build", "_generated", "envs")

needs_sphinx = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None
    or importlib.util.find_spec("myst_parser") is None
    or importlib.util.find_spec("furo") is None,
    reason='the docs extra is not installed (pip install -e ".[docs]": sphinx, furo, myst-parser)',
)


def _ext(name: str):
    """A module of docs/_ext (the site's extension and link checker)."""
    if str(DOCS / "_ext") not in sys.path:
        sys.path.insert(0, str(DOCS / "_ext"))
    return importlib.import_module(name)


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts, and the page's h1."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.h1 = ""
        self._cell: list[str] | None = None
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_h1:
            self.h1 += data


def parse(path: Path) -> _Tables:
    page = _Tables()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def table_with_header(page: _Tables, *header: str) -> list[list[str]]:
    for table in page.tables:
        if table and tuple(table[0][: len(header)]) == header:
            return table[1:]
    raise AssertionError(f"no table with the header {header}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from a copy of docs/ (so the build writes nothing into the checkout)."""
    from sphinx.cmd.build import build_main

    tmp = tmp_path_factory.mktemp("site")
    src, out = tmp / "docs", tmp / "html"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns(*NOT_COPIED, "__pycache__"))
    status = build_main(["-W", "--keep-going", "-q", "-b", "html", str(src), str(out)])
    assert status == 0, "sphinx-build -W failed: see the warnings above"
    return out


@needs_sphinx
def test_every_config_key_is_in_the_configuration_table(site):
    rows = table_with_header(parse(site / "configuration.html"), "key", "default", "meaning")
    keys = [row[0] for row in rows]
    assert keys == list(default_config()), "the table's keys are default_config()'s, in order"
    assert all(row[2] for row in rows), "every key has its meaning"


@needs_sphinx
@pytest.mark.parametrize("env_id", list(splitexit.ENV_PRESETS))
def test_every_registered_id_has_its_page(site, env_id):
    page_path = site / "envs" / f"{env_id}.html"
    assert page_path.is_file(), f"no page for {env_id}"
    page = parse(page_path)
    assert page.h1.strip().rstrip("#¶").strip() == env_id
    preset = splitexit.ENV_PRESETS[env_id]
    if preset:
        rows = table_with_header(page, "key", "value", "default")
        assert [row[0] for row in rows] == list(preset)
    text = page_path.read_text(encoding="utf-8")
    for heading in _ext("splitexit_docs").HEADINGS:
        assert f">{heading}<" in text, f"{env_id}: no {heading!r} section"
    assert f"envs/{env_id}.html" in (site / "environment.html").read_text(encoding="utf-8")


@needs_sphinx
def test_the_sites_internal_links_resolve(site):
    assert _ext("check_links").broken_links(site) == []


@needs_sphinx
def test_an_undocumented_config_key_fails_the_build(monkeypatch):
    from sphinx.errors import ExtensionError

    import splitexit.envs

    monkeypatch.setattr(
        splitexit.envs, "default_config", lambda: {**default_config(), "new_key_s": 1.0}
    )
    with pytest.raises(ExtensionError, match="undocumented keys \\['new_key_s'\\]"):
        _ext("splitexit_docs").config_table()


def test_the_link_checker_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="#top" id="top">ok</a>'
        '<img src="missing.png"> <a href="sub/page.html#nowhere">bad</a>'
        '<a href="https://example.org/x.html">external</a>'
    )
    (tmp_path / "sub" / "page.html").write_text(
        '<h2 id="here">x</h2><a href="../index.html">up</a>'
    )
    broken = _ext("check_links").broken_links(tmp_path)
    assert broken == [
        "index.html: missing.png (no such file)",
        "index.html: sub/page.html#nowhere (no anchor #nowhere)",
    ]
