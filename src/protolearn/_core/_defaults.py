"""Data-adaptive defaults: rules that set a size from the data's shape.

Each rule is a pure function of the number of samples (and of the class counts where
labels are given), so that a default means the same thing on 200 samples as on
200,000.  How each rule was chosen is written next to it and measured in
``benchmarks/results/defaults.md`` (``benchmarks/defaults.py``).
"""

import numpy as np


def knn_rank(n_samples):
    """Default neighbour rank ``k`` of a k-th-nearest-neighbour OOD score.

    ``k = clip(round(n_samples / 1000), 5, 100)``, and below ``n_samples`` (the
    leave-one-out offset needs ``k + 1`` rows).  Sun et al. (2022) scale ``k`` with
    the training set (k=50 for CIFAR-10's 50,000 images, 1000 for ImageNet's 1.28M:
    0.1% and 0.08%); on CLINC150 (15,000 rows) the validation split's best k was 10
    (AUROC 0.975, k=20: 0.972, the old fixed 50: 0.964), i.e. 0.1% rounds to 15.
    Below 5000 rows 0.1% would be 1-4, where a single neighbour is noise: the floor
    of 5 keeps the score a local density estimate.
    """
    n = int(n_samples)
    k = int(np.clip(round(n / 1000), 5, 100))
    return max(1, min(k, n - 1))


def mixture_size(n_samples, class_counts=None):
    """Default number of vMF prototypes of a prototype-mixture detector.

    Without labels (``class_counts`` None): one prototype per 25 samples, at least
    PALM's 6 and at most 1000, and at most ``n_samples // 2`` (two samples per
    prototype): ``min(clip(n_samples // 25, 6, 1000), max(1, n_samples // 2))``.
    Chosen on the validation splits of ``benchmarks/defaults.py``: one per 25 samples
    was best or within 0.01 AUROC of the best on digits, the synthetic set and
    CLINC150's near-OOD split (where one per 50 lost 0.01-0.04), and tied on
    CLINC150's out-of-scope split (600 prototypes; PALM's fixed 6 scored 0.84 there,
    one prototype covering 25 intents); the floor of 6 was best on wine (35 rows).
    With labels: the per-class count is ``clip(min(class_counts) // 10, 1, 6)``:
    PALM's 6 where every class has at least 60 samples (best on digits, tied with 3
    on CLINC150), fewer for small classes (about 10 samples per prototype), so the
    default never fails on a class with fewer than 6 samples.

    Returns
    -------
    n : int
        The total without labels, the per-class count with labels.
    """
    if class_counts is None:
        n = int(n_samples)
        return int(min(np.clip(n // 25, 6, 1000), max(1, n // 2)))
    return int(np.clip(int(np.min(class_counts)) // 10, 1, 6))
