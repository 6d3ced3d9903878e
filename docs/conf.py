"""Sphinx configuration of the splitexit documentation site (Furo + MyST, as Farama's sites).

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
    python docs/_ext/check_links.py docs/_build/html

The env pages (``envs/``) and the configuration table (``_generated/``) are written from the
code at every build by ``_ext/splitexit_docs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # the checkout's splitexit, installed or not

import splitexit  # noqa: E402

project = "splitexit"
author = "the splitexit authors"
copyright = "the splitexit authors, MIT licence"  # noqa: A001
release = version = splitexit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "splitexit_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"splitexit {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False
