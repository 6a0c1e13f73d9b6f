"""Shared helpers for benchmark scripts: timing, machine/version lines, markdown tables."""

import importlib
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def best_time(fn, *args, repeat=3):
    """Best wall time of `repeat` calls ``fn(*args)`` (the least disturbed by other load)
    and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def machine_line():
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{gpu}, Python {platform.python_version()}"
    )


def git_revision():
    """``"commit <short sha>"`` of the checkout the benchmark runs from (with a remark when
    ``src/`` has uncommitted changes), or ``"unknown"`` outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "src")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"commit {rev}" + (" + uncommitted changes in src/" if dirty else "")


def versions_line(*modules):
    out = []
    for m in modules:
        try:
            out.append(f"{m} {importlib.import_module(m).__version__}")
        except Exception as exc:  # noqa: BLE001 - report, never crash a benchmark
            out.append(f"{m} unavailable ({type(exc).__name__})")
    return ", ".join(out)


def markdown_table(header, rows):
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# A results file's hand-written section: everything from this heading to the end of the file
# (measurements made while developing, kept beside the script's tables) survives a re-run.
NOTES_HEADING = "## Notes (kept across runs)"


def keep_notes(old, new):
    """``new`` followed by ``old``'s notes section, when ``old`` has one and ``new`` not."""
    start = old.find(NOTES_HEADING)
    if start < 0 or NOTES_HEADING in new:
        return new
    return new.rstrip("\n") + "\n\n" + old[start:]


def write_results(name, text):
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    if path.exists():
        text = keep_notes(path.read_text(), text)
    path.write_text(text)
    print(f"wrote {path}")
    return path
