"""The one training engine: a skorch ``NeuralNet`` built from MLPClassifier-named settings.

See :mod:`protolearn.nn` for the contract.
"""

import warnings

import numpy as np
import torch
from sklearn import get_config
from sklearn.exceptions import ConvergenceWarning
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, EpochScoring, ProgressBar
from skorch.dataset import ValidSplit, unpack_data
from skorch.history import History
from torch.optim.swa_utils import AveragedModel

from ..utils._sklearn_compat import get_chunk_n_rows
from ._losses import HeadLoss

SETTINGS = (
    "solver",
    "alpha",
    "batch_size",
    "learning_rate_init",
    "max_iter",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
    "tol",
    "verbose",
    "device",
    "net_params",
    "average",
)

# Progress bar when verbose and an epoch has at least this many batches.
_PROGRESS_BATCHES = 20


def resolve_device(device, X=None):
    """The torch device string for a ``device`` setting ("auto", "cpu", "cuda")."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "device='cuda' was requested but no CUDA device is available; use "
                "device='cpu' or device='auto'."
            )
        return "cuda"
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}.")
    if isinstance(X, torch.Tensor) and X.device.type == "cuda":
        return str(X.device)
    return "cuda" if torch.cuda.is_available() else "cpu"


class _LastStep:
    """skorch train-step accumulator keeping the last closure evaluation."""

    def __init__(self):
        self.step = None

    def store_step(self, step):
        self.step = step

    def get_step(self):
        return self.step


class PrototypeNet(NeuralNet):
    """skorch ``NeuralNet`` whose loss adds MLPClassifier's L2 penalty
    ``alpha / 2 * sum |W|^2 / batch_size`` on the projection's weight matrices.

    With `record_last_loss`, a step's recorded training loss is its last closure
    evaluation (for L-BFGS: the loss at the end of the step, where the line search
    stopped) instead of skorch's first (the loss before the step).

    With `row_chunks`, a training batch larger than scikit-learn's ``working_memory``
    budget (:func:`row_chunk_size`) is forwarded and backward'd in row chunks: each
    chunk's loss, weighted by its share of the batch's rows, is backward'd on its
    own into the accumulated gradients, so a step (e.g. a full-batch L-BFGS closure
    evaluation) never holds the graph of all rows x prototypes at once.  The loss
    and gradients equal the whole-batch ones to rounding *if the loss is a mean over
    rows plus row-independent terms* (GLVQ, CBC margin, robust CBC, cross-entropy;
    not PALM, whose Sinkhorn and contrastive terms couple the rows of a batch).  A
    chunked step returns ``y_pred=None`` to skorch's ``on_batch_end`` callbacks.
    """

    def __init__(
        self, *args, alpha=0.0, record_last_loss=False, row_chunks=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.record_last_loss = record_last_loss
        self.row_chunks = row_chunks

    def get_train_step_accumulator(self):
        if self.record_last_loss:
            return _LastStep()
        return super().get_train_step_accumulator()

    def initialize_callbacks(self):
        super().initialize_callbacks()
        # (skorch notifies ``on_grad_computed`` at every closure evaluation, with a
        # generator over the parameters; skipped when no callback implements it)
        self._grad_callbacks = (
            any(
                type(cb).on_grad_computed is not Callback.on_grad_computed
                for _, cb in self.callbacks_
            )
            or type(self).on_grad_computed is not NeuralNet.on_grad_computed
        )
        return self

    def notify(self, method_name, **cb_kwargs):
        if method_name == "on_grad_computed" and not getattr(
            self, "_grad_callbacks", True
        ):
            return
        super().notify(method_name, **cb_kwargs)

    def _zero_grad_optimizer(self, set_to_none=None):
        # (what torch's ``Optimizer.zero_grad()`` does by default, without its
        # per-call dynamo-disable wrapper and profiler record: an L-BFGS step
        # zeroes the gradients at each of its closure evaluations)
        if set_to_none is False:
            return super()._zero_grad_optimizer(set_to_none)
        for name in self._optimizers:
            for group in getattr(self, name + "_").param_groups:
                for p in group["params"]:
                    p.grad = None

    def _penalty(self, n_rows):
        """MLPClassifier's L2 penalty for a batch of `n_rows` rows (or None)."""
        proj = getattr(self.module_, "projection", None)
        if not self.alpha or proj is None:
            return None
        sq = sum((lin.weight**2).sum() for lin in proj.linears())
        return 0.5 * self.alpha * sq / max(n_rows, 1)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training:
            penalty = self._penalty(len(y_true))
            if penalty is not None:
                loss = loss + penalty
        return loss

    def train_step_single(self, batch, **fit_params):
        if not self.row_chunks:
            return super().train_step_single(batch, **fit_params)
        Xi, yi = unpack_data(batch)
        n = len(Xi)
        # (the chunk size of a batch shape is computed once per fit)
        key = (n, Xi.shape[1], Xi.element_size(), get_config()["working_memory"])
        cached = getattr(self, "_row_chunk_cache", None)
        if cached is None or cached[0] != key or cached[1] is not self.module_:
            self._row_chunk_cache = (
                key,
                self.module_,
                row_chunk_size(self.module_, Xi),
            )
        step = self._row_chunk_cache[2]
        if step >= n:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        total = 0.0
        for start in range(0, n, step):
            Xc, yc = Xi[start : start + step], yi[start : start + step]
            y_pred = self.infer(Xc, **fit_params)
            # (the loss is a row mean: the chunk mean weighted by its share)
            loss = super().get_loss(y_pred, yc, X=Xc, training=True)
            loss = loss * (len(Xc) / n)
            loss.backward()
            total = total + loss.detach()
            del y_pred, loss
        penalty = self._penalty(n)
        if penalty is not None:
            penalty.backward()
            total = total + penalty.detach()
        return {"loss": total, "y_pred": None}


def row_chunk_size(module, X):
    """Rows of `X` per forward/backward chunk under ``working_memory``.

    A row's temporaries scale with the features plus the leading dimension of each
    parameter (one distance / detection per prototype or component, one activation
    per hidden unit): ``8 * (d + sum p.shape[0]) * itemsize`` bytes per row, as
    :func:`sklearn.utils.get_chunk_n_rows` budgets it.
    """
    n = len(X)
    width = X.shape[1] + sum(int(p.shape[0]) for p in module.parameters() if p.ndim)
    return get_chunk_n_rows(
        row_bytes=8 * width * X.element_size(), max_n_rows=max(n, 1)
    )


def averaging_start(average, max_epochs):
    """The epoch of a fit (1-based) from which :class:`WeightAveraging` averages,
    for an ``average`` setting (False / None: no averaging, returns None; True: the
    second half of ``max_epochs``; an int k >= 1: the k-th epoch)."""
    if average is None:
        return None
    if isinstance(average, (bool, np.bool_)):  # (numpy's bools too: not ints here)
        return int(max_epochs) // 2 + 1 if average else None
    if int(average) < 1:
        raise ValueError(f"average must be a bool or an int >= 1; got {average!r}.")
    return int(average)


class WeightAveraging(Callback):
    """Stochastic weight averaging (Izmailov et al., UAI 2018) within one fit.

    From the `start`-th epoch of a training run (a skorch ``fit`` / ``partial_fit``
    call) on, the module's parameters at the end of each epoch are averaged with
    equal weights (``torch.optim.swa_utils.AveragedModel``); at the end of the run
    the module's parameters are replaced by the average.  Buffers (e.g. the vMF
    layer's EMA prototypes) keep their last values.  A run that stops before
    `start` keeps its last weights.
    """

    def __init__(self, start):
        self.start = start

    def on_train_begin(self, net, **kwargs):
        self.epochs_ = 0
        self.averaged_ = None

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1
        if self.epochs_ < self.start:
            return
        if self.averaged_ is None:  # (a copy; its first update takes the weights)
            self.averaged_ = AveragedModel(net.module_, use_buffers=False)
        self.averaged_.update_parameters(net.module_)

    def on_train_end(self, net, **kwargs):
        if self.averaged_ is not None:
            with torch.no_grad():
                for mine, avg in zip(
                    net.module_.parameters(), self.averaged_.module.parameters()
                ):
                    mine.copy_(avg)
        self.averaged_ = None  # (a module copy: not kept after the run)


def _quiet(*args, **kwargs):
    pass


def _validation_accuracy(net, dataset, y=None):
    """Accuracy of the head's ``"scores"`` argmax on a validation dataset."""
    hits = total = 0
    for Xb, yb in net.get_iterator(dataset, training=False):
        with torch.no_grad():
            pred = net.infer(Xb)["scores"].argmax(1)
        hits += int((pred.cpu() == torch.as_tensor(yb).cpu()).sum())
        total += len(yb)
    return hits / max(total, 1)


class _Rows:
    """Map-style dataset over (X, y) arrays or tensors that hands out whole batches
    (``__getitems__``: one gather per batch instead of one row per call and a
    collation; the loader's ``collate_fn`` is :func:`_batch`).  ``y=None`` (skorch's
    inference) gives a zero placeholder, as skorch's own dataset does."""

    def __init__(self, X, y=None):
        self.X, self.y = X, y

    def __len__(self):
        return self.X.shape[0]

    def __getitem__(self, i):  # (one row, for code that indexes rows)
        return self.X[i], 0 if self.y is None else self.y[i]

    def __getitems__(self, idx):
        if torch.is_tensor(self.X):
            idx = torch.as_tensor(idx, device=self.X.device)
            zeros = torch.zeros
        else:
            idx, zeros = np.asarray(idx, dtype=np.intp), np.zeros
        y = zeros(len(idx)) if self.y is None else self.y[idx]
        return self.X[idx], y


def _batch(batch):
    """The loaders' collate function: a batch is already (X, y) arrays."""
    return batch


def make_net(module, settings, *, loss="cross_entropy", loss_params=None, seed=0,
             n_samples=None, device="cpu", validation_scoring="loss"):  # fmt: skip
    """A :class:`PrototypeNet` training `module` with `loss` under `settings`.

    `settings` holds the :data:`SETTINGS` keys (MLPClassifier's meanings; ``solver``
    "adam" or "lbfgs"); `seed` seeds the data loader's ``torch.Generator`` and the
    validation split; `n_samples` resolves ``batch_size="auto"``; `device` is a torch
    device string (see :func:`resolve_device`).  `validation_scoring` is what early
    stopping monitors: "loss" (the validation loss) or "accuracy" (as
    MLPClassifier: the validation accuracy of the ``"scores"`` argmax, recorded in
    the history as ``"valid_acc"``).  ``net_params`` entries override anything
    (skorch's double-underscore names, e.g. ``optimizer__weight_decay``).
    """
    s = settings
    n = n_samples if n_samples is not None else 200
    if s["solver"] == "lbfgs":
        # (as MLPClassifier, L-BFGS ignores learning_rate_init: its line search
        # starts from the unit step)
        optimizer, bs, lr = torch.optim.LBFGS, -1, 1.0
        opt_kw = {"optimizer__line_search_fn": "strong_wolfe"}
    else:
        optimizer, lr = torch.optim.Adam, float(s["learning_rate_init"])
        bs = min(200, n) if s["batch_size"] == "auto" else int(s["batch_size"])
        opt_kw = {}
    es = bool(s["early_stopping"])
    start = averaging_start(s.get("average", False), s["max_iter"])
    if start is not None and (es or s["solver"] == "lbfgs"):
        raise ValueError(
            "average (weight averaging over the epochs) needs solver='adam' and "
            "early_stopping=False: early stopping restores its best epoch's weights, "
            "and L-BFGS iterates are not averaged."
        )
    if validation_scoring not in ("loss", "accuracy"):
        raise ValueError(
            f"validation_scoring must be 'loss' or 'accuracy'; got {validation_scoring!r}."
        )
    by_acc = es and validation_scoring == "accuracy"
    callbacks = []
    if by_acc:
        callbacks.append(
            (
                "valid_acc",
                EpochScoring(
                    _validation_accuracy,
                    lower_is_better=False,
                    name="valid_acc",
                    use_caching=False,
                ),
            )
        )
    callbacks += [
        (
            "early_stopping",
            EarlyStopping(
                monitor="valid_acc" if by_acc else "valid_loss" if es else "train_loss",
                lower_is_better=not by_acc,
                patience=int(s["n_iter_no_change"]),
                threshold=float(s["tol"]),
                threshold_mode="abs",
                load_best=es,
                sink=print if s["verbose"] else _quiet,
            ),
        )
    ]
    if start is not None:
        callbacks.append(("weight_averaging", WeightAveraging(start)))
    batches = 1 if bs == -1 else int(np.ceil(n / max(bs, 1)))
    if s["verbose"] and batches >= _PROGRESS_BATCHES:
        callbacks.append(("progress_bar", ProgressBar()))
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    kwargs = dict(
        criterion=HeadLoss,
        criterion__loss=loss,
        criterion__loss_params=loss_params or {},
        optimizer=optimizer,
        lr=lr,
        max_epochs=int(s["max_iter"]),
        batch_size=bs,
        # (a batch is one gather, not rows collated one by one)
        dataset=_Rows,
        iterator_train__collate_fn=_batch,
        iterator_valid__collate_fn=_batch,
        iterator_train__shuffle=True,
        iterator_train__generator=generator,
        # (a loader without a generator draws its base seed from the global one)
        iterator_valid__generator=torch.Generator().manual_seed(int(seed)),
        train_split=(
            ValidSplit(
                float(s["validation_fraction"]),
                stratified=True,
                random_state=int(seed) % (2**31),
            )  # fmt: skip
            if es
            else None
        ),
        callbacks=callbacks,
        predict_nonlinearity=None,
        verbose=int(bool(s["verbose"])),
        device=device,
        alpha=float(s["alpha"]),
        **opt_kw,
    )
    if not s["verbose"]:
        # (skorch's PrintLog tabulates the history at every epoch even when quiet)
        kwargs["callbacks__print_log"] = None
    kwargs.update(s.get("net_params") or {})
    return PrototypeNet(module, **kwargs)


def fit_net(net, X, y, *, name="model", partial=False):
    """Train `net` on numpy ``X`` (float32) and ``y`` (int64 class indices).

    Returns ``(loss_curve, n_iter)`` from skorch's history; warns
    :class:`~sklearn.exceptions.ConvergenceWarning` when ``max_epochs`` ran out before
    the stopping rule fired, and raises ``ValueError`` on a non-finite loss.
    """
    from ..classification._trained import _cpu_threads

    before = len(net.history) if partial else 0
    module = net.module_ if partial else net.module
    # Small steps train on fewer CPU threads (see _cpu_threads): the size of one
    # optimiser step is its batch's rows x the layer widths.
    width = X.shape[1] + sum(int(p.shape[0]) for p in module.parameters() if p.ndim > 1)
    rows = X.shape[0] if net.batch_size == -1 else min(net.batch_size, X.shape[0])
    device = torch.device(net.device)
    with _cpu_threads(torch, device, rows * width):
        (net.partial_fit if partial else net.fit)(X, y)
    losses = [float(v) for v in net.history[:, "train_loss"]]
    if losses and not np.isfinite(losses[-1]):
        raise ValueError(
            f"{name} diverged: the training loss is {losses[-1]} at iteration "
            f"{len(losses)}; lower learning_rate_init or scale the features."
        )
    ran = len(net.history) - before
    if ran >= net.max_epochs:
        warnings.warn(
            f"{name}: maximum iterations ({net.max_epochs}) reached and the "
            "optimisation hasn't converged yet; raise max_iter.",
            ConvergenceWarning,
        )
    return losses, len(losses)


_HISTORY_KEYS = ("epoch", "train_loss", "valid_loss", "valid_acc", "dur")


def net_state(net):
    """Plain-Python state of a trained net: its module's state dict as CPU numpy
    arrays, the optimiser's state, the training loader's generator state and the
    epoch history (no tensors, modules or callbacks)."""
    state = {
        k: v.detach().cpu().numpy().copy() for k, v in net.module_.state_dict().items()
    }
    history = [
        {
            k: (float(e[k]) if k != "epoch" else int(e[k]))
            for k in _HISTORY_KEYS
            if k in e
        }
        for e in net.history
    ]
    out = {
        "module_state": state,
        "optimizer_state": _tree(net.optimizer_.state_dict(), _tensor_to_numpy),
        "history": history,
        "device": str(net.device),
    }
    loader = getattr(net, "iterator_train__generator", None)
    if loader is not None:  # where the next epoch's shuffle starts
        out["loader_state"] = loader.get_state().numpy().copy()
    return out


def _tensor_to_numpy(v):
    return v.detach().cpu().numpy().copy() if isinstance(v, torch.Tensor) else v


def _numpy_to_tensor(v):
    return torch.as_tensor(v) if isinstance(v, np.ndarray) else v


def _tree(obj, leaf):
    """`obj` (nested dicts, lists and tuples) with `leaf` applied to every leaf."""
    if isinstance(obj, dict):
        return {k: _tree(v, leaf) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tree(v, leaf) for v in obj)
    return leaf(obj)


def restore_net(net, module, state):
    """Initialise `net` (built by :func:`make_net` around a fresh `module`) on its
    device and load a :func:`net_state` into it: the module's weights, the
    optimiser's state (Adam's moments), the training loader's shuffling state (so
    that a loaded model's ``partial_fit`` continues as the saved one would, batch for
    batch; each is absent from states saved before it was kept) and the epoch
    history."""
    net.initialize()
    sd = {k: torch.as_tensor(v) for k, v in state["module_state"].items()}
    net.module_.load_state_dict(sd)
    if "optimizer_state" in state:
        net.optimizer_.load_state_dict(
            _tree(state["optimizer_state"], _numpy_to_tensor)
        )
    loader = getattr(net, "iterator_train__generator", None)
    if loader is not None and "loader_state" in state:
        loader.set_state(torch.as_tensor(state["loader_state"]))
    net.history = History(state["history"])
    return net
