"""The base of the trained prototype classifiers: a head on the skorch engine.

GLVQ, GMLVQ, RBF and CBC are *shallow heads*: a :class:`protolearn.nn.PrototypeHead`
whose projection is the identity, followed by their prototype layer
(:class:`~protolearn.nn.PrototypeLayer` or :class:`~protolearn.nn.ComponentLayer`),
trained with their family loss by the one training engine of the library,
:func:`protolearn.nn.make_net` / :func:`protolearn.nn.fit_net` (a skorch ``NeuralNet``:
epochs, early stopping, device, Adam / closure-stepped L-BFGS).
:class:`BaseTrainedPrototypeClassifier` owns ``fit``: validation, label encoding,
dtype, device, the validation split and the mapping of its parameters onto the
engine's MLPClassifier-named settings; each estimator implements two hooks.

Hook contract
-------------
``_build_head(X, y, rng) -> (layer, loss, loss_params)``
    ``X`` is the training part of the validated data as a torch tensor (n, d) on the
    training device in the training dtype, ``y`` an int64 tensor of class indices
    ``0..n_classes-1`` (into ``classes_``, already set), ``rng`` the fit's
    ``numpy.random.RandomState`` (use it, never global seeds, for any randomness such
    as k-means++).  Returns the prototype layer (an ``nn`` layer whose parameters hold
    their initial values; the base puts it behind an identity projection, moves it to
    the device and dtype), the loss (a name of :data:`protolearn.nn.LOSSES`) and its
    keyword parameters.  Raise ``ValueError`` here for data that does not fit the
    hyperparameters (e.g. fewer samples than prototypes in a class).
``_store(state)``
    Set the fitted attributes (ending in ``_``, numpy arrays) from the trained layer's
    state dict (CPU numpy arrays in the training dtype, keys without the ``layer.``
    prefix).  Map unconstrained values with the same :mod:`protolearn._core`
    functions the layer uses, so each formula lives in one place.

Prediction is the job of :class:`~protolearn.base.BasePrototypeClassifier`: the subclass
implements ``_class_scores(X)`` on the fitted numpy attributes with ``_core`` functions
(numpy in -> numpy out, torch tensor in -> tensor out on its device), so a fitted model
holds no torch object, never needs torch unless it is given tensors, and pickles
anywhere.

Training
--------
- torch and :mod:`protolearn.nn` are imported inside ``fit`` only (``import
  protolearn`` stays torch-free).
- dtype: training runs in the dtype of the validated input -- float32 input trains in
  float32, float64 (and integer) in float64.  Fitted attributes have that dtype.
- ``device``: "cpu", "cuda" or "auto" (:func:`protolearn.nn.resolve_device`: the input
  tensor's CUDA device, else CUDA when available, else CPU).  The data are moved to
  the device once, and batches are cut from the device tensors.
- ``optimizer="lbfgs"``: full-batch ``torch.optim.LBFGS`` with a strong-Wolfe line
  search, stepped by skorch with a closure.  One *iteration* is one quasi-Newton
  step; skorch runs them in epochs of ``n_iter_no_change`` iterations (one
  ``LBFGS.step`` each, fewer for a small ``max_iter``), and the stopping rule is
  checked after each epoch.  ``optimizer="adam"``: :class:`torch.optim.Adam` with
  learning rate ``lr`` over shuffled mini-batches of ``batch_size`` rows; one
  iteration is one epoch.
- Randomness: one ``check_random_state(random_state)`` per fit, passed to
  ``_build_head`` and used for the validation split; the data loader shuffles with a
  ``torch.Generator`` seeded from it (never the global torch seed).  On CPU a fixed
  ``random_state`` gives bit-identical fits; CUDA kernels may add float noise.
- Stopping (skorch's ``EarlyStopping``, with MLPClassifier's rule): an epoch improves
  when the monitored value beats the best so far by more than ``tol`` -- the training
  loss, or with ``early_stopping=True`` the accuracy on a stratified
  ``validation_fraction`` of the training data held out from the optimisation (the
  best parameters seen are restored; where a class is too small to stratify, a random
  split that keeps at least one training row of every class).  Training stops after
  ``n_iter_no_change`` epochs (Adam) or one epoch (L-BFGS, whose epoch is
  ``n_iter_no_change`` iterations) without improvement; L-BFGS also stops on torch's
  own tests (loss or step change below ``1e-9``, gradient below ``1e-7``).  Reaching
  ``max_iter`` first warns :class:`~sklearn.exceptions.ConvergenceWarning`.
- Memory: a training batch (for L-BFGS: the whole training set, at each loss
  evaluation) is forwarded and backward'd in row chunks sized by scikit-learn's
  ``working_memory`` (``PrototypeNet(row_chunks=True)``), the chunk losses weighted
  by their share of the rows, so a step never holds all rows x prototypes at once
  and the loss and gradients equal the unchunked ones to rounding.
- Threads: problems with fewer than ~2**20 elements per thread (rows x (features +
  classes)) train on correspondingly fewer CPU threads (restored after ``fit``).
- Fitted: ``n_iter_`` (quasi-Newton iterations for L-BFGS, epochs for Adam),
  ``loss_curve_`` (training loss per epoch; for L-BFGS the loss at the end of each
  ``LBFGS.step``), ``best_loss_``, ``validation_scores_`` / ``best_validation_score_``
  (validation accuracy per epoch; None without early stopping).
"""

from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets

from ..base import BasePrototypeClassifier
from ..utils import _array_api as xp
from ..utils._sklearn_compat import Interval, StrOptions, _fit_context
from ..utils._validation import validate_fit_data

# Elements (rows x (features + classes)) per CPU thread worth parallelising over.
_ELEMENTS_PER_THREAD = 2**20


@contextmanager
def _cpu_threads(torch, device, n_elements):
    """Train small CPU problems on fewer torch threads (restored afterwards).

    The tensors of a small problem are too small to split: waking a thread pool for
    every operation costs more than it saves, most of all on a busy machine.
    Like scikit-learn's KMeans limiting BLAS threads inside ``fit``, this caps
    ``torch.get_num_threads()`` at one thread per ``_ELEMENTS_PER_THREAD`` elements
    (the set-and-restore is process-wide: do not fit two torch models concurrently in
    threads of one process and expect their thread counts to be independent).
    """
    before = torch.get_num_threads()
    want = max(1, min(before, n_elements // _ELEMENTS_PER_THREAD))
    if torch.device(device).type != "cpu" or want == before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _HeldOut:
    """skorch ``train_split``: all of the given data for training, a fixed
    validation part (our own stratified split) for validation."""

    def __init__(self, valid):
        self.valid = valid

    def __call__(self, dataset, y=None, **fit_params):
        return dataset, self.valid


class BaseTrainedPrototypeClassifier(BasePrototypeClassifier):
    """Base class of prototype classifiers trained on the skorch engine.

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
    def _build_head(self, X, y, rng):  # pragma: no cover - abstract hook
        raise NotImplementedError

    def _store(self, state):  # pragma: no cover - abstract hook
        raise NotImplementedError

    # --------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the model by minimising its loss on the skorch training engine.

        Parameters
        ----------
        X : array-like or torch tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        # a tensor's device is the default training device ("auto")
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
        import torch

        from .. import nn
        from ..nn import _engine

        device = nn.resolve_device(self.device, device_hint)
        dtype = torch.float32 if X.dtype == np.float32 else torch.float64

        train_idx, val_idx = self._split(y_idx, rng)
        # (a read-only input, e.g. a memmap, is copied: torch needs writable memory)
        X = X if X.flags.writeable else X.copy()
        Xt = torch.as_tensor(X, dtype=dtype, device=device)
        yt = torch.as_tensor(y_idx, dtype=torch.int64, device=device)
        valid = None
        if val_idx is not None:
            ti = torch.as_tensor(train_idx, device=device)
            vi = torch.as_tensor(val_idx, device=device)
            valid = _engine._Rows(Xt[vi], yt[vi])
            Xt, yt = Xt[ti], yt[ti]

        # (the problem's size for the thread cap: rows x (features + classes))
        size = Xt.shape[0] * (X.shape[1] + classes.size)
        with _cpu_threads(torch, device, size):
            layer, loss, loss_params = self._build_head(Xt, yt, rng)
            head = nn.PrototypeHead(nn.Projection(X.shape[1]), layer)
            head = head.to(device=device, dtype=dtype)
            net = nn.make_net(
                head,
                self._engine_settings(),
                loss=loss,
                loss_params=loss_params,
                seed=int(rng.randint(np.iinfo(np.int32).max)),
                n_samples=Xt.shape[0],
                device=device,
                validation_scoring="accuracy",
            )
            net_params = {
                "train_split": None if valid is None else _HeldOut(valid),
                # (our losses are row means: a batch over the working_memory
                # budget -- full-batch L-BFGS -- is forwarded / backward'd in row
                # chunks with the same loss and gradients)
                "row_chunks": True,
            }
            if self.optimizer == "lbfgs":
                m = self._lbfgs_epoch()
                # (torch's default max_eval, 1.25 m, ends a step after a few
                # line-search evaluations; 25 is the line search's own cap)
                net_params.update(
                    optimizer__max_iter=m,
                    optimizer__max_eval=25 * m,
                    # (the loss after each step: the stopping rule sees an
                    # epoch's gain at its end, not one epoch later)
                    record_last_loss=True,
                )
            net.set_params(**net_params)
            try:
                loss_curve, epochs = nn.fit_net(net, Xt, yt, name=type(self).__name__)
            except RuntimeError as exc:
                if self.optimizer != "lbfgs" or "overflow" not in str(exc):
                    raise
                loss_curve, epochs = self._line_search_failed(net)
        history = net.history
        self.loss_curve_ = loss_curve
        self.best_loss_ = float(min(loss_curve)) if loss_curve else np.nan
        if valid is None:
            self.validation_scores_ = self.best_validation_score_ = None
        else:
            self.validation_scores_ = [float(v) for v in history[:, "valid_acc"]]
            self.best_validation_score_ = max(self.validation_scores_)
        self.n_iter_ = epochs
        if self.optimizer == "lbfgs":
            opt = net.optimizer_
            self.n_iter_ = int(opt.state[opt.param_groups[0]["params"][0]]["n_iter"])
        state = {
            k.removeprefix("layer."): v.detach().cpu().numpy().copy()
            for k, v in net.module_.state_dict().items()
            if k.startswith("layer.")
        }
        self._store(state)
        return self

    @staticmethod
    def _line_search_failed(net):
        """Stop as scipy's L-BFGS-B does when its line search fails.

        Along a direction where the loss keeps falling (e.g. the robust CBC loss
        driving ``sigma`` up), torch's strong-Wolfe extrapolation grows the step
        until it no longer fits the parameters' dtype and ``LBFGS.step`` raises
        before moving them: the parameters are still those of the last accepted
        step.  Training ends there (the best validated ones are restored).
        """
        done = [row for row in net.history if "train_loss" in row]
        net.history = type(net.history)(done)
        for _, cb in net.callbacks_:
            best = getattr(cb, "best_model_weights_", None)
            if getattr(cb, "load_best", False) and best is not None:
                net.module_.load_state_dict(best)
        losses = [float(row["train_loss"]) for row in done]
        return losses, len(losses)

    def _lbfgs_epoch(self):
        """Quasi-Newton iterations per ``LBFGS.step`` (one skorch epoch)."""
        return int(min(self.n_iter_no_change, self.max_iter))

    def _engine_settings(self):
        """Our parameters as :data:`protolearn.nn.SETTINGS` (MLPClassifier's names)."""
        lbfgs = self.optimizer == "lbfgs"
        epochs = (
            -(-self.max_iter // self._lbfgs_epoch()) if lbfgs else int(self.max_iter)
        )
        return {
            "solver": self.optimizer,
            "alpha": 0.0,
            "batch_size": self.batch_size,
            "learning_rate_init": self.lr,
            "max_iter": epochs,
            # (the held-out part is ours: _split; the engine only monitors it)
            "early_stopping": bool(self.early_stopping),
            "validation_fraction": self.validation_fraction,
            "n_iter_no_change": 1 if lbfgs else int(self.n_iter_no_change),
            # (L-BFGS: an epoch of m iterations must gain tol per iteration)
            "tol": self.tol * (self._lbfgs_epoch() if lbfgs else 1),
            "verbose": self.verbose,
            "device": self.device,
            "net_params": None,
            "average": False,
        }

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
