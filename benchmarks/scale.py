"""Scaling on one machine: prediction throughput and peak memory, and clustering time.

    PYTHONPATH=src python benchmarks/scale.py [--quick] [--clustering COPIES]
        [--fewshot COPIES] [--repeat R] [--large-repeat R] [--only PART] [--no-write]

1. Throughput of ``predict`` / ``score_samples`` on n x 384 float32 queries against m
   prototypes, next to the single matrix product of the same shape ((n, 384) @ (384, m),
   the hardware limit), scikit-learn's NearestCentroid and KNeighborsClassifier (k=1,
   brute force, over the same m reference points).  Repeats interleave ours and the
   peers; the best of the repeats is reported.
2. Peak traced memory (tracemalloc) under ``sklearn.config_context(working_memory=128)``
   for 100k and 1M queries against 200 classes: flat in the number of queries means the
   1M peak is about the 100k peak plus the output's size.
3. ``--clustering COPIES``: LaplacianKMeans against KMeans(n_init=1) on CLINC150's
   in-scope rows, COPIES jittered copies (5: 112,500 x 384), 150 clusters, in one run.
4. ``--fewshot COPIES``: LaplacianFewShotClassifier (transductive ``fit`` with 5
   labelled rows per intent, every other row a query) on the same rows, timed next
   to KMeans(n_init=1) and LaplacianKMeans on them, interleaved in one run.

The full run measures 10k / 100k / 1M queries against m = 1,000 prototypes and
10k / 100k against m = 10,000 (1M x 10,000 is not run: the matrix product's
(1M, 10k) float32 output alone is 40 GB, more than this machine's 23 GB, and one
pass of the six rows would take about 40 minutes).  ``--large-repeat``: repeats of
the rows with n * m >= 1e9 (the others get ``--repeat``).  ``--only`` runs one part
(throughput, memory, clustering, fewshot); ``--no-write`` prints the tables only.

Data: random Gaussian blobs (200 classes) for 1.-2.; ../shared/data for 3.
Writes benchmarks/results/scale.md.
"""

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn import config_context
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    git_revision,
    machine_line,
    markdown_table,
    versions_line,
    write_results,
)

from protolearn.classification import (  # noqa: E402
    GaussianPrototypeClassifier,
    NearestPrototypeClassifier,
)
from protolearn.ood import PrototypeMixtureDetector  # noqa: E402

D, C = 384, 200
MiB = 2**20
# every timed call starts after a pause: OpenBLAS's threads keep spinning for a
# while after a multi-threaded product and took a core from the next call (a
# 10k-query predict right after the bare product ran at 0.89 of it, 1.10 after
# 0.2 s idle)
PAUSE = 0.2
SHORT_REPEAT = 7  # repeats of the rows with n x m <= 1e8 (noisy: they take < 1 s)
GAUSSIAN_MAX_PER_CLASS = 10**9  # --no-gaussian-10k: 5


def blobs(n, seed, n_classes=C):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(n_classes, D)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    X = centres[y] + rng.normal(size=(n, D)).astype(np.float32)
    return X.astype(np.float32), y


def queries(n):
    rng = np.random.default_rng(1)
    Q = np.empty((n, D), dtype=np.float32)
    for s in range(0, n, 100_000):  # drawn in blocks: no float64 (n, d) temporary
        m = min(100_000, n - s)
        Q[s : s + m] = rng.standard_normal((m, D), dtype=np.float32)
    return Q


def models(m):
    """The estimators with m prototypes in all (m / 200 per class), and the peers."""
    per = max(m // C, 1)
    X, y = blobs(C * max(4 * per, 20), seed=0)
    out = {
        "NearestPrototypeClassifier.predict": (
            NearestPrototypeClassifier(n_prototypes=per, random_state=0).fit(X, y),
            "predict",
        ),
        # (with m = 10,000: 50 components per class, an EM on 40,000 rows of about
        # 1 minute and 0.7 GiB; --no-gaussian-10k leaves it out)
        "GaussianPrototypeClassifier.predict": (
            GaussianPrototypeClassifier(
                n_components_per_class=per, max_iter=5, random_state=0
            ).fit(X, y),
            "predict",
        )
        if per <= GAUSSIAN_MAX_PER_CLASS
        else None,
        "PrototypeMixtureDetector.score_samples": (
            PrototypeMixtureDetector(n_prototypes=per, max_iter=5, random_state=0).fit(
                X, y
            ),
            "score_samples",
        ),
        "sklearn NearestCentroid.predict (200 centroids)": (
            NearestCentroid().fit(X, y),
            "predict",
        ),
    }
    out = {k: v for k, v in out.items() if v is not None}
    R, yr = blobs(m, seed=2)
    out[f"sklearn KNeighborsClassifier(1, brute).predict ({m} refs)"] = (
        KNeighborsClassifier(1, algorithm="brute").fit(R, yr),
        "predict",
    )
    return out


def throughput(sizes, protos, repeat, large_repeat=None):
    rows = []
    for m in protos:
        ests = models(m)
        P = np.random.default_rng(3).standard_normal((m, D), dtype=np.float32)
        for n in sizes:
            Q = queries(n)
            best = {}
            reps = repeat if large_repeat is None or n * m < 10**9 else large_repeat
            if n * m <= 10**8:  # calls of under a second: best of more repeats
                reps = max(reps, SHORT_REPEAT)
            for _ in range(reps):  # interleaved: every row sees the same load
                time.sleep(PAUSE)
                t0 = time.perf_counter()
                Q @ P.T
                best["matmul"] = min(
                    best.get("matmul", np.inf), time.perf_counter() - t0
                )
                for name, (est, method) in ests.items():
                    time.sleep(PAUSE)
                    t0 = time.perf_counter()
                    getattr(est, method)(Q)
                    t = time.perf_counter() - t0
                    best[name] = min(best.get(name, np.inf), t)
            for name, t in best.items():
                rows.append([
                    f"{n:,}", f"{m:,}", name, f"{n / t:,.0f}", f"{best['matmul'] / t:.2f}",
                    str(reps),
                ])  # fmt: skip
            print(rows[-len(best) :], flush=True)
            del Q
            gc.collect()
    return rows


def peak_memory(sizes):
    ests = models(C)  # one prototype per class: 200
    rows = []
    for n in sizes:
        Q = queries(n)
        for name, (est, method) in ests.items():
            if "KNeighbors" in name:
                continue
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            with config_context(working_memory=128):
                out = getattr(est, method)(Q)
            peak = (tracemalloc.get_traced_memory()[1] - base) / MiB
            tracemalloc.stop()
            rows.append([f"{n:,}", name, f"{peak:,.0f}", f"{out.nbytes / MiB:,.0f}"])
            print(rows[-1], flush=True)
            del out
        del Q
        gc.collect()
    return rows


def clinc_copies(copies):
    """CLINC150's in-scope rows and `copies - 1` jittered copies of them."""
    data = np.load(
        Path(__file__).resolve().parents[1] / "../shared/data/clinc150_minilm.npz"
    )
    X, y = data["X"].astype(np.float32), data["y"]
    X, y = X[y >= 0], y[y >= 0]
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [X] + [X + 0.01 * rng.standard_normal(X.shape, dtype=np.float32)
               for _ in range(copies - 1)]
    )  # fmt: skip
    return X, np.tile(y, copies)


def fewshot(copies, shots=5):
    """LaplacianFewShotClassifier on a large query set, next to the clusterers."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from protolearn.transductive import LaplacianFewShotClassifier, LaplacianKMeans

    X, y = clinc_copies(copies)
    rng = np.random.default_rng(0)
    support = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in range(150)]
    )
    y_in = np.full(y.shape, -1)
    y_in[support] = y[support]
    query = y_in == -1
    runs = [
        ("sklearn KMeans(n_init=1)", KMeans(150, n_init=1, random_state=0), None),
        ("LaplacianKMeans (defaults)", LaplacianKMeans(n_clusters=150, random_state=0),
         None),
        (f"LaplacianFewShotClassifier ({shots} shots / intent)",
         LaplacianFewShotClassifier(), y_in),
    ]  # fmt: skip
    rows = []
    for name, est, labels in runs:
        gc.collect()
        t0 = time.perf_counter()
        if labels is None:
            pred = est.fit(X).labels_
            quality = f"NMI {nmi(y, pred):.3f}"
        else:
            pred = est.fit(X, labels).transduction_
            quality = f"query accuracy {np.mean(pred[query] == y[query]):.3f}"
        t = time.perf_counter() - t0
        rows.append([name, f"{X.shape[0]:,}", quality, f"{t:.1f}"])
        print(rows[-1], flush=True)
    t_km = float(rows[0][3])
    for r in rows:
        r.append(f"{float(r[3]) / t_km:.1f}")
    return rows


def clustering(copies):
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from protolearn.transductive import LaplacianKMeans

    X, y = clinc_copies(copies)
    rows = []
    for name, est in [
        ("sklearn KMeans(n_init=1)", KMeans(150, n_init=1, random_state=0)),
        ("LaplacianKMeans (defaults)", LaplacianKMeans(n_clusters=150, random_state=0)),
    ]:
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        labels = est.fit(X).labels_
        t = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
        rows.append(
            [
                name,
                f"{X.shape[0]:,}",
                f"{nmi(y, labels):.3f}",
                f"{t:.1f}",
                f"{peak:,.0f}",
            ]
        )
        print(rows[-1], flush=True)
    t_km = float(rows[0][3])
    for r in rows:
        r.append(f"{float(r[3]) / t_km:.1f}")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10k / 100k queries, 1 repeat")
    ap.add_argument("--clustering", type=int, default=0, metavar="COPIES")
    ap.add_argument("--fewshot", type=int, default=0, metavar="COPIES")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--large-repeat", type=int, default=None)
    ap.add_argument("--only", choices=["throughput", "memory", "clustering", "fewshot"])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-gaussian-10k", action="store_true")
    ap.add_argument("--only-10k", action="store_true", help="only the m=10,000 rows")
    args = ap.parse_args()
    if args.no_gaussian_10k:
        global GAUSSIAN_MAX_PER_CLASS
        GAUSSIAN_MAX_PER_CLASS = 5
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    repeat = args.repeat or (1 if args.quick else 3)
    run = lambda part: args.only in (None, part)  # noqa: E731
    text = [
        "# Scaling on one machine",
        "",
        f"Machine: {machine_line()} (shared with other jobs: times are noisy, compare "
        "the ratios measured in the same run). "
        f"{versions_line('numpy', 'sklearn', 'dask')}; {git_revision()}.",
        "Produced by `PYTHONPATH=src python benchmarks/scale.py "
        f"{' '.join(sys.argv[1:])}`.",
    ]
    if run("throughput"):
        text += [
            "",
            "## Throughput (queries / s), n x 384 float32 against m prototypes",
            "",
            "Best of the interleaved repeats.  `vs matmul`: throughput relative to the "
            "single matrix product (n, 384) @ (384, m) (target >= 0.9 for ours).",
            "",
        ]
        rows = []
        if not args.only_10k:
            rows += throughput(sizes, [1_000], repeat, args.large_repeat)
        if not args.quick:
            rows += throughput(sizes[:2], [10_000], repeat, args.large_repeat)
        text.append(markdown_table(
            ["n", "m", "method", "queries / s", "vs matmul", "repeats"], rows
        ))  # fmt: skip
    if run("memory"):
        text += [
            "",
            "## Peak traced memory (MiB), 200 classes, working_memory=128",
            "",
            "Target: flat in the number of queries (the peak beyond the output does "
            "not grow with n).",
            "",
            markdown_table(
                ["n", "method", "peak MiB", "output MiB"],
                peak_memory([100_000, 1_000_000]),
            ),
        ]
    if args.clustering and run("clustering"):
        text += [
            "",
            f"## Clustering: CLINC150 in-scope x {args.clustering} jittered copies, "
            "150 clusters",
            "",
            "Target: LaplacianKMeans within 3x of KMeans' time with NMI at least "
            "KMeans'.",
            "",
            markdown_table(
                ["method", "n", "NMI", "time (s)", "peak MiB", "time / KMeans"],
                clustering(args.clustering),
            ),
        ]
    if args.fewshot and run("fewshot"):
        text += [
            "",
            f"## Transductive few-shot on a large query set: CLINC150 in-scope x "
            f"{args.fewshot} jittered copies",
            "",
            "Target: within 3x of KMeans' time.",
            "",
            markdown_table(
                ["method", "n", "quality", "time (s)", "time / KMeans"],
                fewshot(args.fewshot),
            ),
        ]
    out = "\n".join(text) + "\n"
    if args.no_write:
        print(out)
    else:
        write_results("scale", out)


if __name__ == "__main__":
    main()
