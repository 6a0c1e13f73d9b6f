"""Result rows -> a plain-text / markdown table."""

import time
from contextlib import contextmanager

COLUMNS = (
    "family",
    "estimator",
    "data",
    "metric",
    "score",
    "reference",
    "ref_score",
    "fit_s",
)


@contextmanager
def timer(box):
    """``with timer(box): ...`` stores the elapsed seconds in ``box["s"]``."""
    t0 = time.perf_counter()
    yield box
    box["s"] = time.perf_counter() - t0


def row(
    family, estimator, data, metric, score, reference="", ref_score=None, fit_s=None
):
    return {
        "family": family,
        "estimator": estimator,
        "data": data,
        "metric": metric,
        "score": score,
        "reference": reference,
        "ref_score": ref_score,
        "fit_s": fit_s,
    }


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def format_table(rows, markdown=False):
    cells = [[_fmt(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(COLUMNS)]
    sep = " | " if markdown else "  "

    def line(vals):
        body = sep.join(v.ljust(w) for v, w in zip(vals, widths))
        return f"| {body} |" if markdown else body

    out = [line(COLUMNS)]
    out.append(
        "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        if markdown
        else "  ".join("-" * w for w in widths)
    )
    out.extend(line(c) for c in cells)
    return "\n".join(out)
