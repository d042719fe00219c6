"""MkDocs hook: show the repository's README.md and BENCHMARKS.md inside the site without copying them.

A page marks the part to replace with `<!-- include: ../FILE.md -->` ... `<!-- end include -->` (on GitHub the
part between shows, a link to the file); the site shows the file there, its links re-pointed from the
repository's root to the docs directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_INCLUDE = re.compile(r"<!-- include: (?P<path>[^ ]+) -->.*?<!-- end include -->", re.DOTALL)
_LINKS = (("](docs/images/", "](images/"), ("](docs/", "]("), ("](BENCHMARKS.md", "](benchmarks.md"),
          ("](README.md", "](index.md"))


def _included(page_dir: Path, relative: str) -> str:
    text = (page_dir / relative).read_text(encoding="utf-8")
    for old, new in _LINKS:
        text = text.replace(old, new)
    return text


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every include block of the page with the file it names."""
    page_dir = Path(page.file.abs_src_path).parent
    return _INCLUDE.sub(lambda m: _included(page_dir, m.group("path")), markdown)
