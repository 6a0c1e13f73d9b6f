"""Manifold mixup in DeepCBCClassifier's margin loss (protolearn.nn.cbc_margin_loss)."""

import numpy as np
import pytest
import torch

from protolearn.deep import DeepCBCClassifier
from protolearn.nn import ComponentLayer, batch_pairs, cbc_margin_loss


def _margin_loss_np(P, y, margin):
    own = P[np.arange(len(y)), y]
    other = np.where(np.arange(P.shape[1])[None, :] == y[:, None], -np.inf, P).max(1)
    return np.maximum(other - own + margin, 0)


def test_batch_pairs_pair_each_row_with_the_previous_one():
    Z = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    mixed, prev, lam = batch_pairs(Z, (0.0, 1.0))
    np.testing.assert_array_equal(prev.numpy(), [4, 0, 1, 2, 3])
    np.testing.assert_allclose(lam.numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert lam.dtype == torch.float64
    ref = (
        lam.numpy()[:, None] * Z.numpy() + (1 - lam.numpy()[:, None]) * Z.numpy()[prev]
    )
    np.testing.assert_allclose(mixed.numpy(), ref, rtol=1e-12)


def test_cbc_mixup_loss_matches_reference():
    torch.manual_seed(0)
    layer = ComponentLayer(3, 5, 4).double()
    layer.reset_parameters(torch.Generator().manual_seed(0))
    Z = torch.randn(8, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    out = layer(Z)
    out["z"] = Z
    base = cbc_margin_loss(out, y, margin=0.1)
    # reference: row i mixed with row i - 1 at lam_i = i / 7, scored by the layer
    # and charged lam_i / 1 - lam_i of the margin losses against both labels
    yn, Zn = y.numpy(), Z.numpy()
    prev = (np.arange(8) - 1) % 8
    lam = np.arange(8) / 7
    mixed = lam[:, None] * Zn + (1 - lam[:, None]) * Zn[prev]
    P = layer(torch.as_tensor(mixed))["probabilities"].detach().numpy()
    ref = lam * _margin_loss_np(P, yn, 0.1) + (1 - lam) * _margin_loss_np(
        P, yn[prev], 0.1
    )
    P0 = out["probabilities"].detach().numpy()
    assert base.item() == pytest.approx(_margin_loss_np(P0, yn, 0.1).mean(), rel=1e-12)
    got = cbc_margin_loss(out, y, margin=0.1, mixup=1.5)
    assert got.item() == pytest.approx(base.item() + 1.5 * ref.mean(), rel=1e-10)
    assert cbc_margin_loss(out, y, margin=0.1, mixup=0.0) == base
    # a one-row batch has no pair: the plain loss
    one = {k: (v[:1] if k in ("probabilities", "z") else v) for k, v in out.items()}
    assert cbc_margin_loss(one, y[:1], 0.1, mixup=1.0) == cbc_margin_loss(
        one, y[:1], 0.1
    )


def test_mixup_lowers_the_mixed_loss_of_unseen_pairs(clinc_small):
    """On 20 CLINC150 intents, the head trained with mixup has the lower mixup term
    on pairs of *test* rows, mixed as in training (0.0601 -> 0.0593 at seed 0; lower
    at seeds 1 and 2 too): it learned what the term asks beyond its training rows.
    (Accuracy: within one test row here; on all 150 intents +0.47 points on the
    validation split over two seeds, -0.09 on the test split:
    benchmarks/results/deep_heads.md.)"""
    X, y, Xt, yt = clinc_small
    known = yt != -1
    order = np.random.default_rng(1).permutation(int(known.sum()))
    Xk, yk = Xt[known][order], yt[known][order]
    mixed = {}
    for w in (0.0, 2.0):
        clf = DeepCBCClassifier(mixup=w, random_state=0).fit(X, y)
        yi = torch.as_tensor(np.searchsorted(clf.classes_, yk))
        with torch.no_grad():
            out = clf.net_.module_.eval()(torch.as_tensor(Xk))
            mixed[w] = (
                cbc_margin_loss(out, yi, clf.margin, mixup=1.0)
                - cbc_margin_loss(out, yi, clf.margin)
            ).item()
    assert mixed[2.0] < mixed[0.0], mixed


def test_mixup_must_be_non_negative():
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="mixup"):
        DeepCBCClassifier(mixup=-0.5).fit(X, np.arange(20) % 2)
