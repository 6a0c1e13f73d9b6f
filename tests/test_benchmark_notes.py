"""A benchmark re-run keeps the hand-written notes section of its results file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _report import NOTES_HEADING, keep_notes  # noqa: E402


def test_rerun_keeps_the_notes_section():
    old = f"# T\n\n| a |\n|---|\n| 1 |\n\n{NOTES_HEADING}\n\n- measured once: 0.9\n"
    new = "# T\n\n| a |\n|---|\n| 2 |\n"
    out = keep_notes(old, new)
    assert out.startswith(new.rstrip("\n"))
    assert out.endswith(f"{NOTES_HEADING}\n\n- measured once: 0.9\n")
    assert "| 1 |" not in out


def test_no_notes_or_new_notes_leave_the_new_text():
    assert keep_notes("# old\n", "# new\n") == "# new\n"
    new = f"# new\n\n{NOTES_HEADING}\n\nfresh\n"
    assert keep_notes(f"# old\n\n{NOTES_HEADING}\n\nstale\n", new) == new
