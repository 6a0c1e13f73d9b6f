"""The trained prototype classifiers on the skorch engine vs the hand-written loop.

GLVQ / GMLVQ / RBF / CBC moved from their own training loop (scipy L-BFGS-B, commit
a7b7772) onto the skorch engine of ``protolearn.nn``.  This script fits both versions
of each model on the same data in one process, alternating old and new fits (the
machine is shared: interleaving exposes both to the same load), and reports test
accuracy and fit-time ratios.

The old code is imported from a copy of ``src/protolearn`` at that commit renamed to
``protolearn_old``::

    mkdir -p /tmp/old && git archive a7b7772 src | tar -x -C /tmp/old
    cp -r /tmp/old/src/protolearn /tmp/old/protolearn_old
    PYTHONPATH=src python benchmarks/trained_engine.py --old /tmp/old

Data: wine, breast cancer, digits (5 stratified 70/30 splits, standardised,
``load_demo_data``) and CLINC150 (in-scope train -> test, one split; ``--clinc-repeats``
alternating fits per version).  Writes ``benchmarks/results/trained_engine.md``.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, versions_line, write_results  # noqa: E402

from protolearn.datasets import load_clinc150, load_demo_data  # noqa: E402

warnings.filterwarnings("ignore")

MODELS = {
    "GLVQClassifier": ("GLVQClassifier", {}),
    "GMLVQClassifier": ("GMLVQClassifier", {}),
    "RBFClassifier (margin)": ("RBFClassifier", {"loss": "margin"}),
    "RBFClassifier (robust)": ("RBFClassifier", {"loss": "robust"}),
    "CBCClassifier (original, margin)": (
        "CBCClassifier",
        {"reasoning": "original", "loss": "margin"},
    ),
    "CBCClassifier (stable, margin)": (
        "CBCClassifier",
        {"reasoning": "stable", "loss": "margin"},
    ),
    "CBCClassifier (stable, robust)": (
        "CBCClassifier",
        {"reasoning": "stable", "loss": "robust"},
    ),
}
CLINC_MODELS = (
    "GLVQClassifier",
    "GMLVQClassifier (10/class subsample)",
    "CBCClassifier (stable, margin)",
)


def _fit(pkg, name, seed, Xtr, ytr, Xte, yte):
    cls_name, params = MODELS[name.replace(" (10/class subsample)", "")]
    est = getattr(pkg, cls_name)(random_state=seed, **params)
    t = time.perf_counter()
    est.fit(Xtr, ytr)
    dt = time.perf_counter() - t
    return float(np.mean(est.predict(Xte) == yte)), dt


def _subsample(y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    idx = [
        rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        for c in np.unique(y)
    ]
    return np.sort(np.concatenate(idx))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="folder holding protolearn_old")
    ap.add_argument("--datasets", default="wine,breast_cancer,digits,clinc150")
    ap.add_argument("--models", default="")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--clinc-repeats", type=int, default=2)
    ap.add_argument("--json", default="")
    ap.add_argument("--merge", default="", help="JSON files of other runs to add")
    args = ap.parse_args()
    sys.path.insert(0, args.old)
    import protolearn_old.classification as old
    import torch

    import protolearn.classification as new

    torch.set_num_threads(1)
    # warm-up: the first fit of each version pays its lazy imports (skorch for new)
    d = load_demo_data("wine", random_state=0)
    for pkg in (old, new):
        _fit(pkg, "GLVQClassifier", 0, d.X_train, d.y_train, d.X_test, d.y_test)
    only = [m for m in args.models.split(",") if m]
    res = {}  # (data, model) -> {"old": [(acc, s)], "new": [...]}
    for ds in [d for d in args.datasets.split(",") if d]:
        if ds == "clinc150":
            tr = load_clinc150(subset="train", include_oos=False)
            te = load_clinc150(subset="test", include_oos=False)
            runs = [(0, tr.data, tr.target, te.data, te.target)]
            names = CLINC_MODELS
            repeats = args.clinc_repeats
        else:
            runs = []
            for seed in range(args.splits):
                d = load_demo_data(ds, random_state=seed)
                runs.append((seed, d.X_train, d.y_train, d.X_test, d.y_test))
            names = list(MODELS)
            repeats = 1
        for name in names:
            if only and not any(o in name for o in only):
                continue
            entry = res.setdefault(f"{ds}|{name}", {"old": [], "new": []})
            for seed, Xtr, ytr, Xte, yte in runs:
                if "subsample" in name:
                    keep = _subsample(ytr, 10)
                    Xtr, ytr = Xtr[keep], ytr[keep]
                for r in range(repeats):
                    # alternate which version goes first
                    order = [("old", old), ("new", new)]
                    if (seed + r) % 2:
                        order.reverse()
                    for tag, pkg in order:
                        entry[tag].append(_fit(pkg, name, seed, Xtr, ytr, Xte, yte))
            o, n = np.array(entry["old"]), np.array(entry["new"])
            print(
                f"{ds:14s} {name:38s} acc old {o[:, 0].mean():.4f} new "
                f"{n[:, 0].mean():.4f}  fit s old {o[:, 1].mean():.3f} new "
                f"{n[:, 1].mean():.3f} ratio {n[:, 1].sum() / o[:, 1].sum():.2f}",
                flush=True,
            )
            if args.json:
                Path(args.json).write_text(json.dumps(res))
    for part in [p for p in args.merge.split(",") if p]:
        res = {**json.loads(Path(part).read_text()), **res}
    write_results("trained_engine", report(res, args))


def report(res, args):
    rows = [
        "| data | model | acc old (a7b7772) | acc new (skorch) | paired Δ acc | "
        "fit s old | fit s new | new / old fit time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in res.items():
        ds, name = key.split("|")
        o, n = np.array(entry["old"]), np.array(entry["new"])
        d = n[:, 0] - o[:, 0]
        sd = lambda a: f" ± {a.std():.4f}" if len(a) > 1 else ""  # noqa: E731
        rows.append(
            f"| {ds} | {name} | {o[:, 0].mean():.4f}{sd(o[:, 0])} | "
            f"{n[:, 0].mean():.4f}{sd(n[:, 0])} | {d.mean():+.4f}{sd(d)} | "
            f"{o[:, 1].mean():.3g} | {n[:, 1].mean():.3g} | "
            f"{n[:, 1].sum() / o[:, 1].sum():.2f} |"
        )
    return "\n\n".join(
        [
            "# Trained prototype classifiers: skorch engine vs the old training loop",
            machine_line() + " " + versions_line(),
            "Old: commit a7b7772 (own loop: scipy L-BFGS-B, one quasi-Newton step per "
            "iteration). New: the skorch engine of `protolearn.nn` (torch LBFGS "
            "stepped with a closure, epochs of `n_iter_no_change` steps). Estimator "
            "defaults, `random_state` = split seed. wine / breast cancer / digits: "
            f"{args.splits} stratified 70/30 splits (accuracy mean ± std over splits, "
            "fit time mean); CLINC150: in-scope train (15,000) -> test (4,500), "
            f"{args.clinc_repeats} fits per version; the GMLVQ row uses a stratified "
            "10/class subsample (as in prototype_classifiers.md). Old and new fits "
            "alternate in one process, one torch / BLAS thread, on a machine shared "
            "with other jobs (load average %.1f / %.1f / %.1f over 1 / 5 / 15 min "
            "when this table was written): compare the ratios."
            % os.getloadavg()
            + (
                " This table was assembled (`--merge`) from runs of the same code "
                "one after another; each row comes from one process."
                if args.merge
                else ""
            ),
            "\n".join(rows),
        ]
    )


if __name__ == "__main__":
    main()
