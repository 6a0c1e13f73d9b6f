"""Choose DeepCBCClassifier's closed-set configuration on CLINC150's validation split.

Train on the in-scope training rows (15,000), score on the in-scope validation rows
(3,000); the test split is never read.  Each configuration is trained in
``--step``-epoch slices with ``warm_start=True`` (the net, its Adam state and its data
loader continue), and validation / training accuracy are recorded after every slice,
so one run gives the accuracy at ``step, 2 step, ...`` epochs.  LogisticRegression
(C=10), the closed-set peer of ``deep_heads.py``, is scored on the same split.

Run: ``python benchmarks/deep_cbc_val.py --configs defaults lr3e-3 ... [--step 20
--slices 3]``; every result is appended as one JSON line to ``--out``.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protolearn.datasets import load_clinc150
from protolearn.deep import DeepCBCClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)
warnings.filterwarnings("ignore", category=UserWarning)

CONFIGS = {
    "defaults": {},
    "lr3e-3": dict(learning_rate_init=3e-3),
    "lr1e-2": dict(learning_rate_init=1e-2),
    "margin0.3": dict(margin=0.3),
    "margin0.05": dict(margin=0.05),
    "margin0.02": dict(margin=0.02),
    "margin0.5": dict(margin=0.5),
    "K450": dict(n_components=450),
    "K750": dict(n_components=750),
    "K600": dict(n_components=600),
    "linear512": dict(hidden_layer_sizes=(512,)),
    "linear384": dict(hidden_layer_sizes=(384,)),
    "identity": dict(hidden_layer_sizes=()),
    "mlp512-256": dict(hidden_layer_sizes=(512, 256)),
    "alpha1e-2": dict(alpha=1e-2),
    "alpha1e-1": dict(alpha=1e-1),
    "lr3e-3-alpha1e-2": dict(learning_rate_init=3e-3, alpha=1e-2),
    "batch64": dict(batch_size=64),
    "gaussian": dict(detection="gaussian"),
    # softmax cross-entropy on the CBC log-probabilities (the "scores"), through
    # net_params (skorch's criterion arguments)
    "xent": dict(
        net_params={"criterion__loss": "cross_entropy", "criterion__loss_params": {}}
    ),
    "xent-lr1e-2": dict(
        learning_rate_init=1e-2,
        net_params={"criterion__loss": "cross_entropy", "criterion__loss_params": {}},
    ),
    "xent-lr3e-3": dict(
        learning_rate_init=3e-3,
        net_params={"criterion__loss": "cross_entropy", "criterion__loss_params": {}},
    ),
    "margin0.15": dict(margin=0.15),
    "K450-lr3e-3": dict(n_components=450, learning_rate_init=3e-3),
    "K750-lr3e-3": dict(n_components=750, learning_rate_init=3e-3),
    "original": dict(reasoning="original"),
    # manifold mixup in the learned space (weight of the mixed margin loss)
    "mixup2": dict(mixup=2.0),
    "K450-mixup2": dict(n_components=450, mixup=2.0),
    # stochastic weight averaging over the second half of the epochs (one fit of
    # the whole budget: --step 40 --slices 1; each warm-start slice would average
    # only its own epochs)
    "avg": dict(average=True),
    "mixup2-avg": dict(mixup=2.0, average=True),
}


def load_split():
    b = load_clinc150()
    out = {}
    for s in ("train", "val"):
        m = (b.split == s) & (b.target >= 0)
        out[s] = (b.data[m].astype(np.float32), b.target[m])
    return out


def run_config(name, kw, data, step, slices, out, seed=0):
    (X, y), (Xv, yv) = data["train"], data["val"]
    clf = DeepCBCClassifier(random_state=seed, warm_start=True, **kw)
    clf.set_params(max_iter=step)
    fit_s = 0.0
    for i in range(slices):
        t0 = time.perf_counter()
        clf.fit(X, y)
        fit_s += time.perf_counter() - t0
        rec = {
            "config": name,
            "params": kw,
            "seed": seed,
            "epochs": len(clf.loss_curve_),
            "val_acc": float(clf.score(Xv, yv)),
            "train_acc": float(clf.score(X, y)),
            "loss": clf.loss_curve_[-1],
            "sigma": clf.sigma_,
            "lipschitz": clf.lipschitz_,
            "fit_s": fit_s,
        }
        print(json.dumps(rec), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if len(clf.loss_curve_) < step * (i + 1):  # the stopping rule fired
            break


def write_table(path, out):
    """The markdown table of every record in the JSON-lines file `path`."""
    from _report import markdown_table

    recs = [json.loads(line) for line in Path(path).read_text().splitlines()]
    lr = [r for r in recs if r["config"].startswith("LogisticRegression")]
    runs = {}
    for r in recs:
        if "epochs" in r:
            key = (r["config"], r.get("seed", 0))
            runs.setdefault(key, {})[r["epochs"]] = r
    epochs = sorted({e for v in runs.values() for e in v})
    rows = []
    for (_, seed), by_ep in runs.items():
        last = by_ep[max(by_ep)]
        params = ", ".join(
            f"net_params: criterion__loss={v['criterion__loss']!r}"
            if k == "net_params"
            else f"{k}={tuple(v) if isinstance(v, list) else v!r}"
            for k, v in last["params"].items()
        )
        late = [r["val_acc"] for e, r in by_ep.items() if e >= 40]
        rows.append(
            [params or "(defaults)", seed]
            + [f"{by_ep[e]['val_acc']:.4f}" if e in by_ep else "" for e in epochs]
            + [f"{np.mean(late):.4f}" if late else ""]
            + [f"{last['train_acc']:.4f}", f"{last['fit_s']:.0f}"]
        )
    for r in lr:
        rows.append(
            [r["config"], "-"]
            + [f"{r['val_acc']:.4f}"] * bool(epochs)
            + [""] * max(len(epochs) - 1, 0)
            + [f"{r['val_acc']:.4f}"]
            + [f"{r['train_acc']:.4f}", f"{r['fit_s']:.0f}"]
        )
    header = (
        ["DeepCBCClassifier parameters", "seed"]
        + [f"val acc @{e} ep" for e in epochs]
        + ["mean val acc @>=40 ep", "train acc (last)", "fit s (last)"]
    )
    intro = (
        "### Choice of the configuration (validation split)\n\n"
        "`benchmarks/deep_cbc_val.py`: DeepCBCClassifier trained on the in-scope "
        "training rows (15,000) and scored on the in-scope **validation** rows "
        "(3,000; the test split is not read), each configuration changing the "
        "listed parameters from the defaults. Every run is trained in slices of 10 "
        "or 20 epochs with `warm_start=True` (net, Adam state and data loader "
        "continue), so one run gives the accuracy after each slice; fit s is the "
        "cumulative training time up to the last slice (one torch thread, shared "
        "2-core machine). LogisticRegression(C=10) on the same split for "
        "reference.\n\n"
    )
    Path(out).write_text(intro + markdown_table(header, rows) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="*", default=["defaults"])
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--lr", action="store_true", help="also LogisticRegression(C=10)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--out", default="deep_cbc_val.jsonl")
    ap.add_argument("--table", default=None, help="write the markdown table here")
    args = ap.parse_args()
    if args.table:
        write_table(args.out, args.table)
        return
    data = load_split()
    if args.lr:
        (X, y), (Xv, yv) = data["train"], data["val"]
        t0 = time.perf_counter()
        lr = LogisticRegression(C=10.0, max_iter=2000).fit(X, y)
        rec = {
            "config": "LogisticRegression(C=10)",
            "val_acc": float(lr.score(Xv, yv)),
            "train_acc": float(lr.score(X, y)),
            "fit_s": time.perf_counter() - t0,
        }
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    for seed in args.seeds:
        for name in args.configs:
            run_config(
                name, CONFIGS[name], data, args.step, args.slices, args.out, seed
            )


if __name__ == "__main__":
    main()
