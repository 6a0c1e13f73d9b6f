"""Defaults protocol: every estimator's default next to its best configuration tuned on
validation data, on data sets the defaults were not tuned on.

Run: ``PYTHONPATH=src python benchmarks/defaults.py [--quick]`` (writes
``benchmarks/results/defaults.md``).  Public API only.

For each data set: a stratified 60 / 20 / 20 train / validation / test split (seed 0;
CLINC150 uses its own splits).  Every configuration of a small grid (the default
included) is fitted on train and scored on validation; the best on validation is then
reported on test next to the default.  Test data never chooses anything.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_wine,
    make_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid, NearestNeighbors
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    git_revision,
    machine_line,
    markdown_table,
    versions_line,
    write_results,
)

from protolearn.classification import (  # noqa: E402
    CBCClassifier,
    GaussianPrototypeClassifier,
    GLVQClassifier,
    GMLVQClassifier,
    NearestPrototypeClassifier,
    RBFClassifier,
)
from protolearn.deep import (  # noqa: E402
    DeepCBCClassifier,
    DeepGaussianPrototypeClassifier,
    DeepPrototypeMixtureDetector,
)
from protolearn.metrics import auroc, open_set_report  # noqa: E402
from protolearn.ood import (  # noqa: E402
    KNNDetector,
    MahalanobisDetector,
    PrototypeMixtureDetector,
)
from protolearn.utils import all_estimators  # noqa: E402

CLINC = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "clinc150_minilm.npz"
)
SEED = 0


# ------------------------------------------------------------------------ data
def _split(X, y):
    Xtr, Xrest, ytr, yrest = train_test_split(
        X, y, test_size=0.4, stratify=y, random_state=SEED
    )
    Xva, Xte, yva, yte = train_test_split(
        Xrest, yrest, test_size=0.5, stratify=yrest, random_state=SEED
    )
    return Xtr, ytr, Xva, yva, Xte, yte


def _scaled(split):
    Xtr, ytr, Xva, yva, Xte, yte = split
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), ytr, sc.transform(Xva), yva, sc.transform(Xte), yte


def tabular_sets():
    """name -> (Xtr, ytr, Xva, yva, Xte, yte), float64."""
    out = {}
    X, y = load_digits(return_X_y=True)
    out["digits"] = _split(X, y)
    for name, loader in (("wine", load_wine), ("breast cancer", load_breast_cancer)):
        X, y = loader(return_X_y=True)
        s = _split(X, y)
        out[f"{name} unscaled"] = s
        out[f"{name} scaled"] = _scaled(s)
    X, y = make_classification(
        n_samples=1500,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        n_classes=4,
        n_clusters_per_class=2,
        weights=[0.6, 0.25, 0.1, 0.05],
        random_state=SEED,
    )
    out["synthetic unequal"] = _split(X, y)
    return out


def load_clinc():
    d = np.load(CLINC)
    return d["X"].astype(np.float32), d["y"], d["split"]


# ------------------------------------------------------------- classification
def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(X, y)


CLASSIFIER_GRIDS = {
    # trained estimators keep modest budgets (max_iter) so the run stays short
    "NearestPrototypeClassifier": (
        NearestPrototypeClassifier(random_state=SEED),
        [
            dict(n_prototypes=3),
            dict(metric="mahalanobis"),
            dict(metric="cosine"),
        ],
    ),
    "GaussianPrototypeClassifier": (
        GaussianPrototypeClassifier(random_state=SEED),
        [
            dict(covariance_type="full"),
            dict(covariance_type="full", pooling=0.5),
            dict(covariance_type="diag"),
            dict(shrinkage=None),
            dict(shrinkage="oas"),
        ],
    ),
    "GLVQClassifier": (
        GLVQClassifier(random_state=SEED, max_iter=100),
        [dict(n_prototypes=3), dict(activation="identity")],
    ),
    "GMLVQClassifier": (
        GMLVQClassifier(random_state=SEED, max_iter=100),
        [dict(n_components=2), dict(n_prototypes=2)],
    ),
    "RBFClassifier": (
        RBFClassifier(random_state=SEED),
        [dict(n_components=30), dict(loss="robust")],
    ),
    "CBCClassifier": (
        CBCClassifier(random_state=SEED),
        [dict(n_components=30), dict(reasoning="original")],
    ),
    # deep heads (CPU): projection, epoch budget and learning rate
    "DeepGaussianPrototypeClassifier": (
        DeepGaussianPrototypeClassifier(random_state=SEED),
        [
            dict(hidden_layer_sizes=(256,)),
            dict(max_iter=100),
            dict(learning_rate_init=1e-2),
            dict(outlier_exposure=0.0),  # (the default before it became 1)
        ],
    ),
    "DeepCBCClassifier": (
        DeepCBCClassifier(random_state=SEED),
        [
            dict(hidden_layer_sizes=()),
            dict(max_iter=100),
            dict(learning_rate_init=1e-2),
        ],
    ),
}


def classification_rows(sets, log):
    rows, misses = [], []
    for data, (Xtr, ytr, Xva, yva, Xte, yte) in sets.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            base = NearestCentroid().fit(Xtr, ytr).score(Xte, yte)
        for name, (default, grid) in CLASSIFIER_GRIDS.items():
            t0 = time.perf_counter()
            cands = [("default", default)] + [
                (
                    ", ".join(f"{k}={v!r}" for k, v in p.items()),
                    clone(default).set_params(**p),
                )
                for p in grid
            ]
            val, test = [], []
            for label, est in cands:
                try:
                    _quiet_fit(est, Xtr, ytr)
                    val.append(est.score(Xva, yva))
                    test.append(est.score(Xte, yte))
                except Exception as exc:  # noqa: BLE001 - a config that fails is reported
                    log(f"  {name} {label} on {data}: {type(exc).__name__}: {exc}")
                    val.append(-np.inf)
                    test.append(np.nan)
            b = int(np.argmax(val))
            gap = test[b] - test[0]
            rows.append(
                [
                    data,
                    name,
                    test[0],
                    cands[b][0],
                    test[b],
                    gap,
                    base,
                    time.perf_counter() - t0,
                ]
            )
            if gap > 0.01 or test[0] < base - 0.05:
                misses.append((data, name, test[0], cands[b][0], test[b], base))
            log(
                f"{data} | {name} | val/test accuracy: "
                + "; ".join(
                    f"{c[0]} {v:.3f}/{t:.3f}" for c, v, t in zip(cands, val, test)
                )
            )
    return rows, misses


# ----------------------------------------------------------------- detection
def ood_tasks(sets, clinc):
    """name -> (X_fit, y_fit, (X_val, in_val), (X_test, in_test))."""
    tasks = {}
    for data, (Xtr, ytr, Xva, yva, Xte, yte) in sets.items():
        classes = np.unique(ytr)
        if data.startswith("breast"):
            known = classes[1:]  # benign is normal, malignant the novelty
        elif data.startswith("synthetic"):
            known = classes[1:]  # unequal known classes (25/10/5 %), the largest unseen
        else:
            known = classes[: len(classes) // 2]
        m = np.isin(ytr, known)
        tasks[f"{data} ({', '.join(map(str, known.tolist()))} known)"] = (
            Xtr[m],
            ytr[m],
            (Xva, np.isin(yva, known).astype(int)),
            (Xte, np.isin(yte, known).astype(int)),
        )
    if clinc is None:
        return tasks
    X, y, split = clinc
    tr = (split == "train") & (y >= 0)
    va, te = split == "val", split == "test"
    tasks["CLINC150 out-of-scope"] = (
        X[tr],
        y[tr],
        (X[va], (y[va] >= 0).astype(int)),
        (X[te], (y[te] >= 0).astype(int)),
    )
    rng = np.random.default_rng(SEED)
    unseen = rng.choice(150, size=38, replace=False)  # 25 % of intents unseen
    kn = (y >= 0) & ~np.isin(y, unseen)
    un = np.isin(y, unseen)
    tasks["CLINC150 near-OOD (25 % intents unseen)"] = (
        X[tr & kn],
        y[tr & kn],
        (X[va & (kn | un)], kn[va & (kn | un)].astype(int)),
        (X[te & (kn | un)], kn[te & (kn | un)].astype(int)),
    )
    return tasks


def _knn_baseline(Xf, X):
    nn = NearestNeighbors(n_neighbors=10).fit(Xf)
    return -nn.kneighbors(X)[0][:, -1]


def detector_grids(n):
    return {
        "KNNDetector": (
            KNNDetector(),
            [dict(n_neighbors=k) for k in (1, 5, 10, 20, 50)] + [dict(normalize=False)],
            False,
        ),
        "PrototypeMixtureDetector (unlabelled)": (
            PrototypeMixtureDetector(random_state=SEED, max_iter=30),
            [
                dict(n_prototypes=k)
                for k in sorted({6, max(1, n // 100), max(1, n // 50)})
            ]
            + [dict(temperature=0.05)],
            False,
        ),
        "PrototypeMixtureDetector (labelled)": (
            PrototypeMixtureDetector(random_state=SEED, max_iter=30),
            [
                dict(n_prototypes=1),
                dict(n_prototypes=3),
                dict(score_type="max_similarity"),
            ],
            True,
        ),
        "MahalanobisDetector": (
            MahalanobisDetector(),
            [dict(method="relative"), dict(method="agnostic"), dict(normalize=True)],
            True,
        ),
        "DeepPrototypeMixtureDetector (labelled)": (
            DeepPrototypeMixtureDetector(random_state=SEED),
            [dict(n_prototypes=3), dict(score_type="mixture"), dict(max_iter=30)],
            True,
        ),
    }


def detection_rows(tasks, log):
    rows, misses = [], []
    for data, (Xf, yf, (Xv, iv), (Xt, it)) in tasks.items():
        base = auroc(it, _knn_baseline(Xf, Xt))
        for name, (default, grid, labelled) in detector_grids(Xf.shape[0]).items():
            t0 = time.perf_counter()
            cands = [("default", default)] + [
                (
                    ", ".join(f"{k}={v!r}" for k, v in p.items()),
                    clone(default).set_params(**p),
                )
                for p in grid
            ]
            val, test = [], []
            for label, est in cands:
                try:
                    _quiet_fit(est, Xf, yf if labelled else None)
                    val.append(auroc(iv, est.score_samples(Xv)))
                    test.append(auroc(it, est.score_samples(Xt)))
                except Exception as exc:  # noqa: BLE001
                    log(f"  {name} {label} on {data}: {type(exc).__name__}: {exc}")
                    val.append(-np.inf)
                    test.append(np.nan)
            b = int(np.argmax(val))
            gap = test[b] - test[0]
            rows.append(
                [
                    data,
                    name,
                    test[0],
                    cands[b][0],
                    test[b],
                    gap,
                    base,
                    time.perf_counter() - t0,
                ]
            )
            if gap > 0.01 or test[0] < base - 0.05:
                misses.append((data, name, test[0], cands[b][0], test[b], base))
            log(
                f"{data} | {name} | val/test AUROC: "
                + "; ".join(
                    f"{c[0]} {v:.3f}/{t:.3f}" for c, v, t in zip(cands, val, test)
                )
            )
    return rows, misses


# ------------------------------------------------------------------- open set
NOTA_GRID = {
    "nota='adaptive'": dict(nota="adaptive"),
    "nota='adaptive', relative": dict(nota="adaptive", relative=True),
    "nota='global'": dict(nota="global"),
    "nota='global', relative": dict(nota="global", relative=True),
    "nota='quantile'": dict(nota="quantile"),
    "nota='quantile', relative": dict(nota="quantile", relative=True),
}


def open_set_protocols(clinc):
    X, y, split = clinc
    tr, va, te = split == "train", split == "val", split == "test"
    out = {
        "out-of-scope split": (
            X[tr & (y >= 0)],
            y[tr & (y >= 0)],
            (X[va], y[va]),
            (X[te], y[te]),
        )
    }
    for share in (25, 50, 75):
        rng = np.random.default_rng(SEED + share)
        known = rng.choice(150, size=150 * share // 100, replace=False)
        ins = y >= 0
        kn = np.isin(y, known)
        lab = np.where(kn, y, -1)
        out[f"open intent {share} % known"] = (
            X[tr & kn],
            y[tr & kn],
            (X[va & ins], lab[va & ins]),
            (X[te & ins], lab[te & ins]),
        )
    return out


def _msp(Xf, yf, Xv, yv, Xt, yt):
    """LogisticRegression max-probability baseline, threshold chosen on validation."""
    lr = LogisticRegression(C=10, max_iter=1000).fit(Xf, yf)

    def predict(X, thr):
        P = lr.predict_proba(X)
        return np.where(P.max(1) >= thr, lr.classes_[P.argmax(1)], -1)

    thrs = np.quantile(lr.predict_proba(Xv).max(1), np.linspace(0.0, 0.6, 31))
    best = max(thrs, key=lambda t: open_set_report(yv, predict(Xv, t)).macro_f1)
    return open_set_report(yt, predict(Xt, best)).macro_f1


def open_set_rows(protocols, log, gpc_kw):
    rows, per_mode = [], {}
    for data, (Xf, yf, (Xv, yv), (Xt, yt)) in protocols.items():
        t0 = time.perf_counter()
        base = _msp(Xf, yf, Xv, yv, Xt, yt)
        val, test = {}, {}
        for label, params in NOTA_GRID.items():
            clf = _quiet_fit(
                GaussianPrototypeClassifier(random_state=SEED, **gpc_kw, **params),
                Xf,
                yf,
            )
            val[label] = open_set_report(yv, clf.predict(Xv)).macro_f1
            test[label] = open_set_report(yt, clf.predict(Xt)).macro_f1
            per_mode.setdefault(label, []).append((val[label], test[label]))
            log(f"{data:28s} {label:28s} val {val[label]:.3f} test {test[label]:.3f}")
        b = max(val, key=val.get)
        rows.append(
            [data, b, test[b], base, time.perf_counter() - t0]
            + [test[k] for k in NOTA_GRID]
        )
    return rows, per_mode


# ------------------------------------------------------------------------ main
CACHE = Path(__file__).resolve().parent / "results" / "defaults.json"
SECTIONS = ("det", "os", "cls")


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="tabular sets only")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated sections to (re)compute: det (detectors), os (open "
        "set), cls (classifiers); the others are read from results/defaults.json, "
        "so sections can run as separate processes (default: all)",
    )
    args = p.parse_args(argv)
    todo = [x for x in args.sections.split(",") if x]
    if not todo:  # re-render the markdown from the cached sections only
        _render(json.loads(CACHE.read_text()))
        return
    sets = tabular_sets()
    clinc = load_clinc() if CLINC.exists() and not args.quick else None
    for sec in todo:
        logs = []

        def log(msg, logs=logs):
            print(msg, flush=True)
            logs.append(msg)

        t0 = time.perf_counter()
        if sec == "det":
            out = detection_rows(ood_tasks(sets, clinc), log)
        elif sec == "os":
            if clinc is None:
                continue
            out = open_set_rows(
                open_set_protocols(clinc),
                log,
                dict(covariance_type="spherical", pooling=0.5),
            )
        else:
            out = classification_rows(sets, log)
        cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
        cache[sec] = _plain(
            dict(
                result=out,
                logs=logs,
                seconds=time.perf_counter() - t0,
                commit=git_revision(),  # (sections run separately)
            )
        )
        tmp = CACHE.with_suffix(f".{sec}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(CACHE)  # atomic: sections may run as parallel processes
        _render(cache)


def _render(cache):
    empty = dict(result=([], []), logs=[], seconds=0.0)
    parts = {k: cache.get(k, empty) for k in SECTIONS}
    if "os" not in cache:
        parts["os"] = dict(result=([], {}), logs=[], seconds=0.0)
    write_results(
        "defaults",
        report(
            *parts["cls"]["result"],
            *parts["det"]["result"],
            *parts["os"]["result"],
            {
                k: (v["seconds"], v.get("commit", "an earlier commit"))
                for k, v in parts.items()
            },
            sum((parts[k]["logs"] for k in SECTIONS), []),
        ),
    )


# Causes of the misses, from the per-configuration validation / test log below.  Keyed
# by (estimator prefix, best configuration prefix, data prefix or "").
CAUSES = [
    (
        "KNNDetector",
        "n_neighbors=",
        "",
        "the best k depends on how tight the data's clusters are, not on its size: "
        "k=1 on digits and on CLINC150's intents, 10-20 on the tabular sets. Over the "
        "eight detection tasks the mean validation AUROC is about the same for k=1, 5 "
        "and 10 (see the log), so no rule of n_samples, classes or dimension picks each "
        "set's best; `n_neighbors='auto'` keeps 5-15 (the fixed 50 it replaces was worst "
        "on every CLINC150 split).",
    ),
    (
        "KNNDetector",
        "normalize=False",
        "",
        "L2 normalisation (`normalize=True`, Sun et al.'s setting for embeddings) "
        "discards the feature magnitudes that separate these raw tabular classes; it is "
        "right for embeddings and for standardised breast cancer (0.974 vs 0.917). Use "
        "`normalize=False` on raw tabular features.",
    ),
    (
        "MahalanobisDetector",
        "method='relative'",
        "",
        "the relative Mahalanobis score (Ren et al., 2021) is much stronger on CLINC150's "
        "near-OOD and out-of-scope splits, but scores 0.41 on the synthetic set and needs "
        "two classes, so `method='class'` stays the default; the user guide recommends "
        "`method='relative'` for embeddings of many classes.",
    ),
    (
        "MahalanobisDetector",
        "normalize=True",
        "",
        "L2 normalisation helps on these sets and hurts on unscaled breast cancer "
        "(0.922 vs 0.984); which one wins depends on whether direction or magnitude "
        "carries the class, which n, classes and dimension do not tell.",
    ),
    (
        "PrototypeMixtureDetector (labelled)",
        "n_prototypes=1",
        "synthetic",
        "vMF prototypes on L2-normalised tabular features: 4 prototypes per class "
        "(the rule's min count // 10 for the smallest class, 45 rows) are too "
        "concentrated; 1 per class is best here but worst on digits (0.912 vs 0.956).",
    ),
    (
        "PrototypeMixtureDetector (unlabelled)",
        "",
        "",
        "the number of prototypes is chosen by the rule across data sets (one per 25 "
        "samples, at least 6), not per set; the validation-best count differs by a "
        "factor of 2 here.",
    ),
    (
        "PrototypeMixtureDetector",
        "temperature=",
        "",
        "a fixed temperature wins here by a small margin; the learned concentrations "
        "('auto') win on the other sets.",
    ),
]


CAUSES += [
    (
        "NearestPrototypeClassifier",
        "metric='mahalanobis'",
        "breast cancer scaled",
        "the 30 breast cancer features are strongly correlated, which the pooled "
        "covariance of `metric='mahalanobis'` accounts for; euclidean stays the default "
        "(the nearest class mean, which works from one sample per class).",
    ),
    (
        "",
        "",
        "wine unscaled",
        "distances in raw units: proline (hundreds) swamps the other features. Scale "
        "first (the docstrings and guides say so; with `StandardScaler`, *wine scaled*, "
        "the default is at the best). The test split has 36 rows: one row is 2.8 points.",
    ),
    (
        "",
        "",
        "breast cancer unscaled",
        "distances in raw units (areas in the thousands next to ratios below 1): scale "
        "first, as the docstrings and guides say (see *breast cancer scaled*).",
    ),
    (
        "",
        "n_prototypes=",
        "",
        "one prototype per class cannot cover a class made of several clusters (the "
        "synthetic classes have two each; digits are written in several styles). It "
        "stays the default because it is the nearest-class-mean model that works from "
        "one sample per class; `n_prototypes` is the first parameter to tune.",
    ),
    (
        "GaussianPrototypeClassifier",
        "covariance_type='full'",
        "",
        "the classes' covariances differ (QDA-like `full` wins); `tied` (LDA) stays the "
        "default because per-class covariances are singular with few samples per class "
        "in high dimension (CLINC150: 100 rows per intent in 384-d).",
    ),
    (
        "DeepCBCClassifier",
        "learning_rate_init=0.01",
        "synthetic",
        "the default's 30 epochs are about 140 Adam steps on these 900 rows; a tenfold "
        "learning rate (or `max_iter=100`, 0.813) trains further. 1e-3 (MLPClassifier's "
        "default) stays: on digits 1e-2 scores lower on validation (0.961 vs 0.967).",
    ),
    (
        "DeepPrototypeMixtureDetector",
        "max_iter=30",
        "synthetic",
        "PALM scores on the unit sphere, like the shallow vMF detector (0.650 here): "
        "on raw tabular features the magnitude carries the classes more than the "
        "direction (KNNDetector with `normalize=False`: 0.746). 30 epochs gain 0.02 "
        "here but score lower on validation on digits (0.981 vs 0.987) and CLINC150 "
        "out-of-scope (0.980 vs 0.983), so 10 stays.",
    ),
    (
        "GMLVQClassifier",
        "n_components=2",
        "",
        "a rank-2 metric is a strong regulariser on unscaled breast cancer (30 features "
        "on very different scales); scaled, the default is at the best.",
    ),
    (
        "",
        "",
        "",
        "the best configuration differs by data set and no rule of n, classes or "
        "dimension predicts it; small test splits (wine 36, breast cancer 114 rows) make "
        "single-point differences noise.",
    ),
]


def _cause(name, data, best):
    for est, cfg, where, text in CAUSES:
        if name.startswith(est) and best.startswith(cfg) and data.startswith(where):
            return text
    return ""


def report(cls_rows, cls_miss, det_rows, det_miss, os_rows, per_mode, total, logs):
    lines = [
        "# Defaults protocol: default vs best-on-validation, per data set",
        "",
        "Generated by `benchmarks/defaults.py`; do not edit by hand.",
        "",
        f"- **Machine**: {machine_line()}; shared by several engineers' jobs (times are "
        "indicative only). Run time and library code per section (the sections run "
        "as separate processes): "
        + ", ".join(
            f"{label} {total[k][0]:.0f} s ({total[k][1]})"
            for k, label in (
                ("det", "detectors"),
                ("os", "open set"),
                ("cls", "classifiers"),
            )
        )
        + ".",
        f"- **Versions**: {versions_line('numpy', 'scipy', 'sklearn', 'torch')}; "
        f"rendered at protolearn {git_revision()}.",
        "- **Protocol**: tabular sets: stratified 60/20/20 train/validation/test split "
        "(seed 0); wine and breast cancer as given (*unscaled*) and standardised on the "
        "training part (*scaled*); *synthetic unequal*: `make_classification` (1,500 rows, "
        "20 features, 4 classes with shares 60/25/10/5 %). CLINC150: its own train / val / "
        "test splits (all-MiniLM-L6-v2 embeddings). Each estimator's small grid (the "
        "default included) is fitted on train and scored on validation; `best` is the "
        "grid point best on validation, reported on test. The test split chooses nothing.",
        "- **Budgets**: `PrototypeMixtureDetector` runs with `max_iter=30` (default 100) "
        "in every configuration, default included; the trained classifiers (GLVQ, GMLVQ, "
        "RBF, CBC) and the deep heads (CPU) with their default budgets.",
        "- **Target**: default within 0.01 (1 point of accuracy / F1, 0.01 AUROC) of the "
        "validation-chosen best on test; no default more than 0.05 below its family's "
        "simple baseline (NearestCentroid; 10-NN distance; LogisticRegression-MSP).",
        "- `LaplacianFewShotClassifier` and `LaplacianKMeans` (transductive few-shot, "
        "clustering) are not in this table: their defaults are benchmarked on their own "
        "protocols in `transductive.md` and `clustering.md`.",
        "",
        "## Classifiers (test accuracy)",
        "",
        markdown_table(
            [
                "data",
                "estimator",
                "default",
                "best on val",
                "best (test)",
                "best - default",
                "NearestCentroid",
                "grid s",
            ],
            cls_rows,
        ),
        "",
        "## Detectors (test AUROC, in-distribution positive)",
        "",
        "Tabular sets: the first half of the classes are in-distribution (digits 0-4, wine "
        "class 0), the rest unseen; breast cancer: benign in-distribution, malignant unseen; "
        "synthetic: the three smaller classes (25/10/5 %) in-distribution, the largest "
        "unseen. Baseline: distance to the "
        "10th nearest training row (scikit-learn `NearestNeighbors`, raw features).",
        "",
        markdown_table(
            [
                "data",
                "estimator",
                "default",
                "best on val",
                "best (test)",
                "best - default",
                "10-NN distance",
                "grid s",
            ],
            det_rows,
        ),
        "",
    ]
    if os_rows:
        lines += [
            "## Open set: GaussianPrototypeClassifier NOTA modes on CLINC150 (test macro F1)",
            "",
            "Covariance `spherical, pooling=0.5` (chosen on CLINC150's validation split in "
            "`open_set.md`). Open-intent protocol: a random 25/50/75 % of the intents are "
            "known (train rows of those only); validation / test hold the in-scope rows of "
            "all intents, the unknown ones labelled -1. Macro F1 over the known intents and "
            "NOTA (`open_set_report(...).macro_f1`). Baseline: LogisticRegression(C=10) "
            "max-probability, threshold chosen on validation.",
            "",
            markdown_table(
                ["protocol", "best on val", "best (test)", "LR-MSP", "s"]
                + list(NOTA_GRID),
                os_rows,
            ),
            "",
        ]
        mean_val = {k: np.mean([v for v, _ in vals]) for k, vals in per_mode.items()}
        worst = {k: min(t for _, t in vals) for k, vals in per_mode.items()}
        chosen = max(mean_val, key=mean_val.get)
        lines += [
            f"**Chosen across the four protocols** (highest mean validation macro F1): "
            f"`{chosen}`; `relative=True` is better than or tied with plain log-densities "
            "on validation in every protocol with this covariance.",
            "",
        ]
        col = 5 + list(NOTA_GRID).index(chosen)
        gaps = [(r[0], r[2] - r[col], r[3] - r[col]) for r in os_rows]
        lines += [
            f"`{chosen}` against each protocol's best on validation (test macro F1): "
            + "; ".join(f"{d}: {g:+.3f}" for d, g, _ in gaps)
            + " ("
            + ("all within 0.01" if all(g <= 0.01 for _, g, _ in gaps) else "MISS")
            + "). Against LR-MSP: "
            + "; ".join(f"{d}: {-b:+.3f}" for d, _, b in gaps)
            + ". More than 0.05 below LR-MSP: "
            + (", ".join(d for d, _, b in gaps if b > 0.05) or "none")
            + ". Why it trails LR-MSP: the "
            "baseline is a discriminatively trained classifier whose threshold is tuned "
            "on validation rows containing the real unknown intents, while the NOTA "
            "modes are generative and fit their margins on the training split alone "
            "(held-out known intents as pseudo-unknowns); `open_set.md` also finds "
            "logistic regression stronger in the open-intent protocol, and our score "
            "with a validation-tuned threshold no better. No default of "
            "`GaussianPrototypeClassifier` closes this gap.",
            "",
        ]
        lines += [
            "Across protocols (mean validation macro F1 / worst test macro F1): "
            + "; ".join(f"{k}: {mean_val[k]:.3f} / {worst[k]:.3f}" for k in NOTA_GRID),
            "",
        ]
    covered = set(CLASSIFIER_GRIDS) | {n.split(" (")[0] for n in detector_grids(100)}
    covered |= {"LaplacianFewShotClassifier", "LaplacianKMeans"}
    # (the embedders turn raw text / images into vectors: their default is a model
    # name, compared in embed.md, not a configuration to tune on vectors)
    covered |= {"SentenceEmbedder", "ImageEmbedder"}
    missing = [n for n, _ in all_estimators() if n not in covered]
    lines += [
        "Estimators from `all_estimators()` not covered (the embedders, which "
        "take raw text or images, are compared in embed.md): "
        + (", ".join(missing) if missing else "none")
        + ".",
        "",
    ]
    lines += ["## Misses (target not met) and their causes", ""]
    if not (cls_miss or det_miss):
        lines.append("None.")
    for data, name, d, b_label, b, base in cls_miss + det_miss:
        cause = _cause(name, data, b_label)
        lines.append(
            f"- {name} on {data}: default {d:.3f}, best ({b_label}) {b:.3f}, baseline "
            f"{base:.3f}." + (f" *Why*: {cause}" if cause else "")
        )
    lines += ["", "## Log", "", "```", *logs, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
