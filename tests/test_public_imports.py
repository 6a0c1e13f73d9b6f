"""The demo, the examples, the benchmarks and the docs' figures use public API only."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("examples", "benchmarks", "src/protolearn/demo", "doc/_figures")


def _files():
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _private_imports(path, root=ROOT):
    """``(line, name)`` of each private protolearn module or name ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_demo = "demo" in path.relative_to(root).parts[:3]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                if not in_demo:
                    continue
                if node.level == 1:  # the demo's own helper modules
                    continue
                module = "protolearn." + module if module else "protolearn"
            targets = [(module, a.name) for a in node.names]
        else:
            continue
        for module, name in targets:
            parts = module.split(".")
            if parts[0] != "protolearn":
                continue
            full = parts[1:] + ([name] if name else [])
            if any(p.startswith("_") for p in full):
                found.append((node.lineno, ".".join(parts + ([name] if name else []))))
    return found


def test_scan_covers_the_callers():
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert "src/protolearn/demo/_transductive.py" in names
    assert "benchmarks/prototype_classifiers.py" in names
    assert any(n.startswith("examples/") for n in names)


def test_detector_flags_private_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from protolearn._core._graph import kneighbors\n"
        "import protolearn.classification._cbc\n"
        "from protolearn.classification import _trained\n"
        "from protolearn.metrics import auroc\n"
    )
    assert [line for line, _ in _private_imports(bad, tmp_path)] == [1, 2, 3]
    demo = tmp_path / "src" / "protolearn" / "demo"
    demo.mkdir(parents=True)
    (demo / "_x.py").write_text(
        "from ._table import row\nfrom .._core._graph import kneighbors\n"
        "from ..transductive import LaplacianKMeans\n"
    )
    assert _private_imports(demo / "_x.py", tmp_path) == [
        (2, "protolearn._core._graph.kneighbors")
    ]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_public_api_only(path):
    assert _private_imports(path) == [], (
        f"{path.relative_to(ROOT)} imports private protolearn names; expose what it "
        "needs through a public module instead"
    )
