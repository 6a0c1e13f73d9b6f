"""A prototype head: projection + prototype layer, rebuilt from a plain spec.

The spec (a dict of plain Python values) is what a fitted estimator pickles together
with the state dict, so a head trained anywhere is rebuilt on any machine.
"""

import numpy as np
import torch
from torch import nn

from ._layers import (
    ComponentLayer,
    GaussianPrototypeLayer,
    Projection,
    PrototypeLayer,
    VMFMixtureLayer,
)

LAYERS = {
    "gaussian": GaussianPrototypeLayer,
    "prototypes": PrototypeLayer,
    "components": ComponentLayer,
    "vmf_mixture": VMFMixtureLayer,
}


class PrototypeHead(nn.Module):
    """``layer(projection(X))``: the output dict of the layer plus ``"z"`` (the
    learned embedding) and, with `lipschitz_in_output`, ``"lipschitz"`` (the
    projection's Lipschitz bound, for the robust CBC loss)."""

    def __init__(self, projection, layer, *, lipschitz_in_output=False):
        super().__init__()
        self.projection = projection
        self.layer = layer
        self.lipschitz_in_output = bool(lipschitz_in_output)

    def reset_parameters(self, generator):
        self.projection.reset_parameters(generator)
        self.layer.reset_parameters(generator)

    def forward(self, X):
        Z = self.projection(X)
        out = dict(self.layer(Z))
        out["z"] = Z
        if self.lipschitz_in_output:
            out["lipschitz"] = self.projection.lipschitz_bound()
        return out


def build_head(spec):
    """A :class:`PrototypeHead` from a spec::

        {"n_features": d, "hidden_layer_sizes": (h1, ..., k), "activation": "relu",
         "normalize": bool, "layer": name in LAYERS, "layer_params": {...},
         "lipschitz_in_output": bool}

    The layer is built as ``LAYERS[layer](..., dim=k, **layer_params)`` (``k`` the
    projection's output size).  Parameters are left at torch's defaults; call
    ``reset_parameters(generator)`` for a seeded initialisation.
    """
    proj = Projection(
        spec["n_features"],
        tuple(spec.get("hidden_layer_sizes", ())),
        spec.get("activation", "relu"),
        spec.get("normalize", False),
    )
    layer_cls = LAYERS[spec["layer"]]
    layer = layer_cls(dim=proj.n_features_out, **spec.get("layer_params", {}))
    return PrototypeHead(
        proj, layer, lipschitz_in_output=spec.get("lipschitz_in_output", False)
    )


def head_outputs(module, X, keys, *, device=None, batch_size=4096):
    """Selected entries of the head's output for the rows of ``X``, in eval mode.

    ``X``: numpy array or tensor.  Returns a dict of tensors on ``X``'s device when
    ``X`` is a tensor, else of numpy arrays; rows are processed `batch_size` at a
    time.  The outputs stay differentiable in ``X`` when ``X`` is a tensor that
    requires grad (as every estimator's scores do); otherwise no graph is built.
    """
    with torch.set_grad_enabled(isinstance(X, torch.Tensor) and X.requires_grad):
        return _head_outputs(module, X, keys, device=device, batch_size=batch_size)


def _head_outputs(module, X, keys, *, device, batch_size):
    was_training = module.training
    module.eval()
    param = next(module.parameters(), None)
    buf = next(module.buffers(), None)
    ref = param if param is not None else buf
    device = ref.device if device is None else device
    dtype = ref.dtype if ref is not None else torch.float32
    is_t = isinstance(X, torch.Tensor)
    parts = {k: [] for k in keys}
    try:
        for s in range(0, X.shape[0], batch_size):
            xb = X[s : s + batch_size]
            if not is_t:  # (a copy: read-only arrays, e.g. memmaps, are fine)
                xb = np.array(xb, dtype=np.float32)
            xb = torch.as_tensor(xb).to(device=device, dtype=dtype)
            out = module(xb)
            for k in keys:
                parts[k].append(out[k])
    finally:
        module.train(was_training)
    res = {}
    for k, v in parts.items():
        t = torch.cat(v) if v else torch.empty(0)
        res[k] = t.to(X.device) if is_t else t.cpu().numpy()
    return res
