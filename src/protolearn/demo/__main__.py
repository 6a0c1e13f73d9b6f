"""``python -m protolearn.demo``: run every family, print the table, save the plots."""

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import FAMILIES
from ._table import format_table


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m protolearn.demo",
        description="Demo of every protolearn estimator family on scikit-learn's "
        "bundled data sets (digits, wine, breast cancer, iris), and of raw text "
        "(a bundled CLINC150 sample) through SentenceEmbedder into prototype "
        "estimators.",
    )
    parser.add_argument(
        "--output-dir",
        default="demo_output",
        help="folder for the plots and results.md (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only families whose module name contains one of these",
    )
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    rows = []
    t0 = time.perf_counter()
    for modname in FAMILIES:
        if args.only and not any(k in modname for k in args.only):
            continue
        module = importlib.import_module(modname)
        print(f"running {modname.rsplit('.', 1)[1].lstrip('_')} ...", flush=True)
        rows.extend(module.run(out))
    table = format_table(rows)
    print()
    print(table)
    (out / "results.md").write_text(
        "# protolearn demo results\n\n" + format_table(rows, markdown=True) + "\n"
    )
    plots = sorted(p.name for p in out.glob("*.png"))
    print(
        f"\n{len(rows)} results in {time.perf_counter() - t0:.1f} s; table and "
        f"{len(plots)} plots written to {out.resolve()}:"
    )
    for p in plots:
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
