"""Demo data that ships with scikit-learn (digits, wine, breast cancer, iris)."""

import numpy as np
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

_LOADERS = {
    "digits": skd.load_digits,
    "wine": skd.load_wine,
    "breast_cancer": skd.load_breast_cancer,
    "iris": skd.load_iris,
}


def load_demo_data(name="digits", *, test_size=0.3, standardize=True, random_state=0):
    """A bundled scikit-learn data set, split and standardised, as float32.

    Parameters
    ----------
    name : {"digits", "wine", "breast_cancer", "iris"}, default="digits"
    test_size : float, default=0.3
        Stratified test share.
    standardize : bool, default=True
        Scale features with statistics of the training split.
    random_state : int, default=0

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch` with ``X_train``, ``X_test``, ``y_train``,
        ``y_test``, ``target_names``, ``name``.

    Examples
    --------
    >>> from protolearn.datasets import load_demo_data
    >>> data = load_demo_data("iris")
    >>> data.X_train.shape, data.X_test.shape, data.X_train.dtype
    ((105, 4), (45, 4), dtype('float32'))
    """
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {sorted(_LOADERS)}; got {name!r}.")
    raw = _LOADERS[name]()
    X_tr, X_te, y_tr, y_te = train_test_split(
        raw.data,
        raw.target,
        test_size=test_size,
        stratify=raw.target,
        random_state=random_state,
    )
    if standardize:
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return Bunch(
        X_train=X_tr.astype(np.float32),
        X_test=X_te.astype(np.float32),
        y_train=y_tr,
        y_test=y_te,
        target_names=np.asarray(raw.target_names),
        name=name,
    )
