"""The protolearn demo: every estimator family on data that ships with scikit-learn,
and raw text (a CLINC150 sample that ships with protolearn) through an embedding model
that ships as a package.

Run ``python -m protolearn.demo --output-dir demo_output`` (or ``make demo``).  Each
family lives in its own module below, exposing ``run(out_dir) -> list[dict]``; the rows
are printed as one results table and the plots are written to ``out_dir``.
"""

# One module per estimator family; each new family adds its line here.
FAMILIES = [
    "protolearn.demo._deep_heads",
    "protolearn.demo._nearest_prototype",
    "protolearn.demo._ood",
    "protolearn.demo._open_set",
    "protolearn.demo._prototype_classifiers",
    "protolearn.demo._transductive",
    "protolearn.demo._raw_text",
]
