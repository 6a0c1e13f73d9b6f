"""The gradient-training skeleton shared by every trained prototype classifier.

GLVQ, GMLVQ, RBF and CBC differ only in their parameters, their loss and their class
scores; the loop that fits them (validation, label encoding, device and dtype, the
optimiser, mini-batches, early stopping, convergence) lives here once, in the style of
scikit-learn's ``mixture/_base.py``: :class:`BaseTrainedPrototypeClassifier` owns
``fit`` and calls private hooks that each estimator implements.

Hook contract
-------------
A subclass implements four hooks; all receive and return torch objects except
``_store`` (numpy):

``_init_params(X, y, rng) -> dict[str, Tensor]``
    Initial values of the trainable parameters.  ``X`` is the (training part of the)
    validated data as a torch tensor of shape (n, d) on the training device in the
    training dtype, ``y`` an int64 tensor of class indices ``0..n_classes-1`` (into
    ``classes_``, already set), ``rng`` the fit's ``numpy.random.RandomState`` (use it,
    never global seeds, for any randomness such as k-means++).  Every returned tensor
    is detached, moved to the training device/dtype and optimised; parameters are
    *unconstrained* (map them inside ``_loss`` / ``_scores_torch``, e.g. ``softmax`` for
    probabilities, ``softplus`` for scales).  Raise ``ValueError`` here for data that
    does not fit the hyperparameters (e.g. fewer samples than prototypes in a class).
``_loss(params, X, y) -> Tensor``
    Scalar training loss, the *mean* over the rows of the (mini-)batch ``X``, ``y``,
    differentiable in ``params`` (the dict from ``_init_params``).
``_scores_torch(params, X) -> Tensor``
    Class scores (n, n_classes), higher = more likely, with the same decision rule the
    fitted estimator's ``_class_scores`` applies to the stored numpy attributes (the
    base uses it for the early-stopping validation accuracy; tests compare the two).
``_store(params)``
    Set the fitted attributes (ending in ``_``, numpy arrays) from the final parameters,
    given as a dict of numpy arrays (CPU, training dtype).  Map unconstrained values
    with the same :mod:`protolearn._core` functions the torch path uses (they accept
    numpy and torch), so each formula lives in one place.

Optional: ``_project(params)`` runs under ``torch.no_grad()`` after every optimiser
step (e.g. to clip a value into its domain); it should not be needed when the
parametrisation is unconstrained, and L-BFGS assumes it does nothing.

Prediction is the job of :class:`~protolearn.base.BasePrototypeClassifier`: the subclass
implements ``_class_scores(X)`` on the fitted numpy attributes with ``_core`` functions
(numpy in -> numpy out, torch tensor in -> tensor out on its device), so a fitted model
never needs torch unless it is given tensors, and it pickles anywhere.

Training
--------
- ``torch`` is imported inside ``fit`` only (``import protolearn`` stays torch-free).
- dtype: training runs in the dtype of the validated input -- float32 input trains in
  float32 (the fast path on CPU and GPU; cast your data with ``X.astype(np.float32)``),
  float64 (and integer, which validation turns into float64) trains in float64, as the
  house rule "float32 in -> float32 compute" asks.  Fitted attributes have that dtype.
- ``device``: "cpu", "cuda" or "auto" (the input tensor's device when ``X`` is a CUDA
  tensor, else CUDA when available, else CPU).  The data are moved to the device once.
- ``optimizer="lbfgs"``: full-batch L-BFGS-B (:func:`scipy.optimize.minimize`, the
  scipy routine scikit-learn's MLP uses) on the flattened parameters, with loss and
  gradient from torch autograd on the training device; one iteration is one
  quasi-Newton step.  (``torch.optim.LBFGS`` stepped one iteration per call stalls in
  its line search on these piecewise-smooth costs, so it is not used.)  ``optimizer="adam"``:
  :class:`torch.optim.Adam` with learning rate ``lr`` over shuffled mini-batches of
  ``batch_size`` rows; one iteration is one epoch.
- Randomness: one ``check_random_state(random_state)`` per fit, passed to
  ``_init_params`` and used for the validation split; mini-batch shuffling uses a
  ``torch.Generator`` seeded from it (never the global torch seed).  On CPU a fixed
  ``random_state`` gives bit-identical fits; CUDA kernels may add float noise.
- Stopping (the rule of :class:`sklearn.neural_network.MLPClassifier`): an iteration
  improves when the monitored value beats the best so far by more than ``tol`` -- the
  training loss (epoch mean for adam), or with ``early_stopping=True`` the accuracy on
  a stratified ``validation_fraction`` of the training data held out from the
  optimisation (the best parameters seen are restored; where a class is too small
  to stratify, a random split that keeps at least one training row of every class).
  Training stops after ``n_iter_no_change`` consecutive iterations without
  improvement; L-BFGS-B also stops (converged) on scipy's own tests (relative loss
  change below its ``ftol``, or no descent step found).  Reaching ``max_iter`` first warns
  :class:`~sklearn.exceptions.ConvergenceWarning`.
- Threads: problems with fewer than ~2**20 elements per thread (rows x (features +
  classes)) train on correspondingly fewer CPU threads (restored after ``fit``).
- Memory: the full-batch loss and gradient are accumulated over row chunks sized by
  scikit-learn's ``working_memory`` (so ``_loss`` must be a mean over rows); Adam
  batches are bounded by ``batch_size``.
- Fitted: ``n_iter_``, ``loss_curve_`` (training loss per iteration), ``best_loss_``,
  ``validation_scores_`` / ``best_validation_score_`` (None without early stopping).
"""

import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets

from ..base import BasePrototypeClassifier
from ..utils import _array_api as xp
from ..utils._sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    get_chunk_n_rows,
)
from ..utils._validation import validate_fit_data


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ImportError(
            "Training prototype classifiers needs PyTorch: pip install torch."
        ) from exc
    return torch


def resolve_device(device, X=None):
    """The ``torch.device`` for a ``device`` hyperparameter ("cpu", "cuda", "auto")."""
    torch = _import_torch()
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device='cuda' was requested but no CUDA device is available; use "
                "device='cpu' or device='auto'."
            )
        return torch.device("cuda")
    if xp.is_torch(X) and X.device.type == "cuda":
        return X.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Elements (rows x (features + classes)) per CPU thread worth parallelising over.
_ELEMENTS_PER_THREAD = 2**20


@contextmanager
def _cpu_threads(torch, device, n_elements):
    """Train small CPU problems on fewer torch threads (restored afterwards).

    The tensors of a small problem are too small to split: waking a thread pool for
    every operation costs more than it saves, and on a busy machine (the shared
    2-core test runner) it makes training one to two orders of magnitude slower.
    Like scikit-learn's KMeans limiting BLAS threads inside ``fit``, this caps
    ``torch.get_num_threads()`` at one thread per ``_ELEMENTS_PER_THREAD`` elements
    (the set-and-restore is process-wide: do not fit two torch models concurrently in
    threads of one process and expect their thread counts to be independent).
    """
    before = torch.get_num_threads()
    want = max(1, min(before, n_elements // _ELEMENTS_PER_THREAD))
    if device.type != "cpu" or want == before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class BaseTrainedPrototypeClassifier(BasePrototypeClassifier):
    """Base class of prototype classifiers trained by gradient (torch autograd).

    Implements ``fit`` once; subclasses implement the hooks documented in
    :mod:`protolearn.classification._trained` and ``_class_scores``.  Subclasses list
    the training hyperparameters below in their keyword-only ``__init__`` (which only
    assigns) and extend ``_parameter_constraints`` with
    ``{**BaseTrainedPrototypeClassifier._parameter_constraints, ...}``.

    Training parameters
    -------------------
    max_iter : int
        Most iterations (L-BFGS steps, or Adam epochs).
    tol : float
        Smallest improvement of the monitored value that counts (see module doc).
    optimizer : {"lbfgs", "adam"}
    lr : float
        Adam learning rate (L-BFGS uses a line search and ignores it).
    batch_size : int or "auto"
        Adam mini-batch size; "auto" is ``min(200, n_samples)``.
    early_stopping : bool
    validation_fraction : float in (0, 1)
    n_iter_no_change : int
    random_state : int, RandomState instance or None
    device : {"cpu", "cuda", "auto"}
    verbose : int
    """

    _parameter_constraints = {
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"lbfgs", "adam"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------- hooks
    def _init_params(self, X, y, rng):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _loss(self, params, X, y):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _scores_torch(self, params, X):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _store(self, params):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _project(self, params):
        """Optional hook, called under ``no_grad`` after each optimiser step."""

    # --------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the model by minimising its loss with torch autograd.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        device_hint = X if xp.is_torch(X) else None
        X, y = validate_fit_data(self, X, y, reset=True)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 "
                f"class ({classes[0]!r})."
            )
        self.classes_ = classes
        rng = check_random_state(self.random_state)
        torch = _import_torch()
        device = resolve_device(self.device, device_hint)
        dtype = torch.float32 if X.dtype == np.float32 else torch.float64

        train_idx, val_idx = self._split(y_idx, rng)
        # (a read-only input, e.g. a memmap, is copied: torch needs writable memory)
        X = X if X.flags.writeable else X.copy()
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        yt = torch.as_tensor(y_idx, dtype=torch.int64, device=device)
        if val_idx is not None:
            ti = torch.as_tensor(train_idx, device=device)
            vi = torch.as_tensor(val_idx, device=device)
            X_tr, y_tr, X_val, y_val = Xt[ti], yt[ti], Xt[vi], yt[vi]
        else:
            X_tr, y_tr, X_val, y_val = Xt, yt, None, None

        # (the problem's size for the thread cap: rows x (features + classes))
        size = X_tr.shape[0] * (X.shape[1] + classes.size)
        with _cpu_threads(torch, device, size):
            init = self._init_params(X_tr, y_tr, rng)
            params = {
                k: v.detach().to(device=device, dtype=dtype).clone().requires_grad_()
                for k, v in init.items()
            }
            generator = torch.Generator(device="cpu")
            generator.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            best = self._train(params, X_tr, y_tr, X_val, y_val, generator, torch)
        self._store({k: v.detach().cpu().numpy() for k, v in best.items()})
        return self

    def _split(self, y_idx, rng):
        """Stratified (train, validation) row indices, or (None, None)."""
        if not self.early_stopping:
            return None, None
        n, n_classes = y_idx.size, self.classes_.size
        n_val = int(np.ceil(self.validation_fraction * n))
        if n - n_val < n_classes:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} "
                f"leaves {n - n_val} of {n} samples for training, fewer than the "
                f"{n_classes} classes; disable early_stopping or provide more data."
            )
        rows = np.arange(n)
        try:
            tr, val = train_test_split(
                rows, test_size=n_val, stratify=y_idx, random_state=rng
            )
        except ValueError:  # a class too small to stratify
            tr = None
        if tr is None or np.bincount(y_idx[tr], minlength=n_classes).min() == 0:
            # (stratification can also hand every sample of a small class to the
            # validation part): a random split keeping one training row per class
            keep = np.array(
                [rng.choice(np.flatnonzero(y_idx == c)) for c in range(n_classes)]
            )
            rest = np.setdiff1d(rows, keep)
            val = rng.choice(rest, size=n_val, replace=False)
            tr = np.setdiff1d(rows, val)
        return np.sort(tr), np.sort(val)

    def _train(self, params, X, y, X_val, y_val, generator, torch):
        """Run the optimiser; returns the parameters to keep (the best validated)."""
        self.loss_curve_ = []
        self.validation_scores_ = [] if X_val is not None else None
        self.n_iter_ = 0
        self._monitor = {"best": np.inf, "params": None, "no_change": 0}
        if self.optimizer == "lbfgs":
            converged = self._train_lbfgs(params, X, y, X_val, y_val, torch)
        else:
            converged = self._train_adam(params, X, y, X_val, y_val, generator, torch)
        best = self._monitor["params"]
        del self._monitor
        self.best_loss_ = float(min(self.loss_curve_)) if self.loss_curve_ else np.nan
        self.best_validation_score_ = (
            max(self.validation_scores_) if X_val is not None else None
        )
        if not converged:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached "
                "and the optimisation hasn't converged yet; raise max_iter.",
                ConvergenceWarning,
            )
        return best if best is not None else params

    def _end_iteration(self, loss, params, X_val, y_val, torch):
        """Record one finished iteration; True when the stopping rule fires."""
        if not np.isfinite(loss):
            raise ValueError(
                f"{type(self).__name__} diverged: the training loss is {loss} at "
                f"iteration {self.n_iter_ + 1}; lower lr or scale the features."
            )
        self.n_iter_ += 1
        self.loss_curve_.append(float(loss))
        state = self._monitor
        value = loss
        if X_val is not None:
            with torch.no_grad():
                hits = sum(
                    int(
                        (
                            self._scores_torch(params, X_val[sl]).argmax(1) == y_val[sl]
                        ).sum()
                    )
                    for sl in self._row_chunks(params, X_val)
                )
                acc = hits / X_val.shape[0]
            self.validation_scores_.append(acc)
            value = -acc
        if self.verbose:
            msg = f"Iteration {self.n_iter_}, loss = {loss:.8f}"
            if X_val is not None:
                msg += f", validation accuracy = {-value:.4f}"
            print(msg)
        state["no_change"] = (
            0 if value < state["best"] - self.tol else (state["no_change"] + 1)
        )
        if value < state["best"]:
            state["best"] = value
            if X_val is not None:
                state["params"] = {k: v.detach().clone() for k, v in params.items()}
        return state["no_change"] >= self.n_iter_no_change

    def _row_chunks(self, params, X):
        """Row slices of ``X`` whose forward/backward pass fits ``working_memory``.

        A row's temporaries scale with the leading dimensions of the parameters (one
        distance or detection per prototype / component) plus the features.
        """
        n, d = X.shape
        width = d + sum(int(p.shape[0]) for p in params.values() if p.ndim >= 1)
        step = get_chunk_n_rows(
            row_bytes=8 * width * X.element_size(), max_n_rows=max(n, 1)
        )
        return [slice(s, min(s + step, n)) for s in range(0, n, step)]

    def _train_lbfgs(self, params, X, y, X_val, y_val, torch):
        """Full-batch L-BFGS-B (scipy) on the flattened parameters; torch gradients."""
        from scipy.optimize import minimize

        names = list(params)
        sizes = [params[k].numel() for k in names]
        offsets = np.concatenate([[0], np.cumsum(sizes)])

        def unpack(w):
            with torch.no_grad():
                for k, a, b in zip(names, offsets[:-1], offsets[1:]):
                    p = params[k]
                    p.copy_(torch.as_tensor(w[a:b], device=p.device).view(p.shape))
                self._project(params)

        def fun(w):
            unpack(w)
            for p in params.values():
                p.grad = None
            n, total = X.shape[0], 0.0
            for sl in self._row_chunks(params, X):
                # the loss is a mean over rows: chunk means weighted by their share
                loss = self._loss(params, X[sl], y[sl]) * ((sl.stop - sl.start) / n)
                loss.backward()
                total += float(loss.detach())
            grads = [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in params.values()
            ]
            g = torch.cat(grads).detach().cpu().numpy().astype(np.float64)
            return total, g

        def callback(intermediate_result):
            unpack(intermediate_result.x)
            if self._end_iteration(
                float(intermediate_result.fun), params, X_val, y_val, torch
            ):
                raise StopIteration

        w0 = (
            torch.cat([params[k].detach().reshape(-1) for k in names])
            .cpu()
            .numpy()
            .astype(np.float64)
        )
        res = minimize(
            fun,
            w0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            # gtol=0: a gradient threshold depends on the data's scale; the tol /
            # n_iter_no_change rule (and scipy's relative ftol) decide instead.
            options={
                "maxiter": self.max_iter,
                "maxfun": 20 * self.max_iter + 100,
                "gtol": 0.0,
            },
        )
        unpack(res.x)
        if self.n_iter_ == 0:  # stopped before its first iteration (zero gradient)
            with torch.no_grad():
                self._end_iteration(float(res.fun), params, X_val, y_val, torch)
        # status 1: maxiter or maxfun reached; everything else is a stopping rule.
        return res.status != 1

    def _train_adam(self, params, X, y, X_val, y_val, generator, torch):
        """Mini-batch Adam, one epoch per iteration."""
        optimizer = torch.optim.Adam(list(params.values()), lr=self.lr)
        n = X.shape[0]
        bs = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        for _ in range(self.max_iter):
            perm = torch.randperm(n, generator=generator).to(X.device)
            total = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                optimizer.zero_grad()
                loss = self._loss(params, X[idx], y[idx])
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    self._project(params)
                total += float(loss.detach()) * idx.shape[0]
            if self._end_iteration(total / n, params, X_val, y_val, torch):
                return True
        return False
