"""Check the built site's internal links: every local ``href`` and ``src`` resolves to a file,
and every ``#fragment`` to an ``id`` (or ``name``) in the page it points to.

External links (``http:``, ``https:``, ``mailto:`` ...) are not followed: CI runs offline.

    python docs/_ext/check_links.py docs/_build/html    # exit code 1 and one line per broken link
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value)
            elif name in ("href", "src"):
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def broken_links(root: str | Path) -> list[str]:
    """``"page: link (why)"`` for every internal link of the HTML under ``root`` that does not
    resolve."""
    root = Path(root).resolve()
    pages = {p: _parse(p) for p in sorted(root.rglob("*.html"))}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue  # external (or data:, mailto:, javascript:)
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            where = f"{path.relative_to(root)}: {link}"
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root):
                broken.append(f"{where} (outside the site)")
            elif not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no anchor #{parts.fragment})")
    return broken


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_links.py BUILT_HTML_DIR", file=sys.stderr)
        return 2
    if not Path(argv[0]).is_dir():
        print(f"check_links.py: {argv[0]} is not a folder", file=sys.stderr)
        return 2
    broken = broken_links(argv[0])
    for line in broken:
        print(line)
    n = sum(1 for _ in Path(argv[0]).rglob("*.html"))
    print(f"{n} pages, {len(broken)} broken internal links", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
