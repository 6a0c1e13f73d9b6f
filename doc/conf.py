"""Sphinx configuration for the protolearn documentation (``make docs``)."""

import re
from pathlib import Path

import protolearn

project = "protolearn"
author = "protolearn developers"
release = protolearn.__version__
version = release
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # a copy of MathJax from PyPI, served from _static/mathjax: the math renders offline
    "sphinx-mathjax-offline",
    "matplotlib.sphinxext.plot_directive",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "_figures"]

html_theme = "pydata_sphinx_theme"
# The navbar shows the short title; the version is on the landing page.
html_title = "protolearn"
html_short_title = "protolearn"
html_theme_options = {
    "logo": {"text": "protolearn"},
    "navbar_align": "left",
    # example pages give the code the right-hand column's width (it held only a link)
    # (pages outside auto_examples/ match "[!a]**" or "api")
    "secondary_sidebar_items": {
        "[!a]**": ["page-toc", "sourcelink"],
        "api": ["page-toc", "sourcelink"],
        "auto_examples/**": [],
    },
}
html_static_path = ["_static"]
html_css_files = ["protolearn.css"]

# figures drawn from code at build time (the landing page's figure)
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"savefig.bbox": "tight"}

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
}


def _examples_to_run():
    """sphinx-gallery's ``filename_pattern``: every example, except those that need the
    CLINC150 embeddings (they call ``load_clinc150`` with no fallback) when the data
    file is absent. Those are then shown without their output, so that the docs build
    on a machine without the shared data folder."""
    from protolearn.datasets import find_data_file

    try:
        find_data_file("clinc150_minilm.npz")
        return "/plot_"
    except FileNotFoundError:
        pass
    need_data = sorted(
        p.stem
        for p in Path(__file__).resolve().parents[1].glob("examples/*/plot_*.py")
        if "load_clinc150" in (text := p.read_text())
        and "FileNotFoundError" not in text
    )
    print("CLINC150 embeddings not found: not running", ", ".join(need_data))
    skip = "|".join(re.escape(name) for name in need_data)
    return rf"/(?!(?:{skip})\.py$)plot_" if skip else "/plot_"


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": _examples_to_run(),
    "within_subsection_order": "FileNameSortKey",
    # show what the examples print, not the repr of a cell's last expression
    "capture_repr": (),
}
