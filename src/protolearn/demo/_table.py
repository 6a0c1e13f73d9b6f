"""Result rows -> a plain-text / markdown table, and the timing helpers of the demo."""

import time
import warnings
from contextlib import contextmanager

from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestCentroid

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


def timed_fit(make, X, y):
    """``make().fit(X, y)`` (convergence warnings silenced) and its seconds."""
    box = {}
    with timer(box), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make().fit(X, y)
    return clf, box["s"]


def nearest_centroid_accuracy(d):
    """Test accuracy of scikit-learn's NearestCentroid on the demo data `d`."""
    with warnings.catch_warnings():
        # sklearn warns about constant pixels in digits; irrelevant here
        warnings.simplefilter("ignore", UserWarning)
        ref = NearestCentroid().fit(d.X_train, d.y_train)
    return ref.score(d.X_test, d.y_test)


def accuracy_row(family, estimator, data, clf, d, reference, ref_score, fit_s):
    """The row of `clf`'s test accuracy on the demo data `d` against a reference."""
    accuracy = clf.score(d.X_test, d.y_test)
    return row(
        family, estimator, data, "accuracy", accuracy, reference, ref_score, fit_s
    )


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
