"""protolearn.metrics on small hand-computed cases."""

import numpy as np
import pytest

from protolearn import metrics


def test_mean_confidence_interval_hand_computed():
    mean, ci = metrics.mean_confidence_interval([0.5, 0.7, 0.9, 0.7])
    assert mean == pytest.approx(0.7)
    std = np.sqrt((0.04 + 0 + 0.04 + 0) / 4)  # population std
    assert ci == pytest.approx(1.96 * std / 2)
    with pytest.raises(ValueError, match="empty"):
        metrics.mean_confidence_interval([])


def test_auroc_and_fpr95_hand_computed():
    # in-distribution scores 4, 3, 2; out-of-distribution 2.5, 1
    y = [1, 1, 1, 0, 0]
    s = [4, 3, 2, 2.5, 1]
    # pairs (in > out): 4>2.5,4>1,3>2.5,3>1,2>1 = 5 of 6
    assert metrics.auroc(y, s) == pytest.approx(5 / 6)
    # accepting 95% of ID needs threshold 2 -> OOD 2.5 accepted: FPR 1/2
    assert metrics.fpr_at_tpr(y, s) == pytest.approx(0.5)
    # at TPR 2/3 the threshold is 3 -> no OOD accepted
    assert metrics.fpr_at_tpr(y, s, tpr=2 / 3) == 0.0


def test_aupr_in_and_out_hand_computed():
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.1]
    # ID positive ranking: 1(P) 0(N) 1(P) 0(N): AP = (1/1 + 2/3) / 2
    assert metrics.aupr_in(y, s) == pytest.approx((1 + 2 / 3) / 2)
    # OOD positive, ranking by -s: 0.1(P) 0.7(N) 0.8(P) 0.9(N): AP = (1 + 2/3) / 2
    assert metrics.aupr_out(y, s) == pytest.approx((1 + 2 / 3) / 2)
    r = metrics.ood_report([0.9, 0.7], [0.8, 0.1])
    assert r.auroc == pytest.approx(0.75)
    assert r.aupr_in == pytest.approx((1 + 2 / 3) / 2)


def test_ood_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both 1"):
        metrics.auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auroc([1, 0], [np.nan, 0.3])
    with pytest.raises(ValueError, match="lengths"):
        metrics.fpr_at_tpr([1, 0], [0.1])


def test_open_set_report_hand_computed():
    y_true = np.array([0, 0, 1, 1, -1, -1, -1])
    y_pred = np.array([0, -1, 1, 0, -1, -1, 1])
    r = metrics.open_set_report(y_true, y_pred, nota_label=-1)
    assert r.in_scope_accuracy == pytest.approx(2 / 4)
    assert r.nota_precision == pytest.approx(2 / 3)
    assert r.nota_recall == pytest.approx(2 / 3)
    assert r.nota_f1 == pytest.approx(2 / 3)
    assert r.accuracy == pytest.approx(4 / 7)
    # per-class F1: class 0: P=1/2, R=1/2 -> 1/2; class 1: P=1/2, R=1/2 -> 1/2; NOTA 2/3
    assert r.macro_f1 == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert r.known_macro_f1 == pytest.approx(0.5)


def test_open_set_report_string_labels():
    r = metrics.open_set_report(
        ["a", "NOTA", "b"], ["a", "NOTA", "NOTA"], nota_label="NOTA"
    )
    assert r.nota_recall == 1.0 and r.nota_precision == 0.5
    assert r.in_scope_accuracy == 0.5
    # "auto" (the default) is "NOTA" for strings, -1 for numbers, as the classifier's
    auto = metrics.open_set_report(["a", "NOTA", "b"], ["a", "NOTA", "NOTA"])
    assert auto == r
    assert metrics.open_set_report([0, -1], [0, 0]).nota_recall == 0.0
    with pytest.raises(ValueError, match="does not match the string class labels"):
        metrics.open_set_report(["a", "NOTA"], ["a", "a"], nota_label=-1)


def test_ood_metrics_take_torch_tensors():
    """Scores straight from a detector given tensors (autograd on, any device)."""
    torch = pytest.importorskip("torch")
    s = torch.tensor([0.9, 0.8, 0.7, 0.1], requires_grad=True)
    y = torch.tensor([1, 0, 1, 0])
    assert metrics.auroc(y, s) == 0.75
    assert metrics.aupr_in(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.fpr_at_tpr(y, s) == 0.5
    assert metrics.ood_report(s[[0, 2]], s[[1, 3]]).auroc == 0.75
    mean, ci = metrics.mean_confidence_interval(s)
    assert mean == pytest.approx(0.625) and ci > 0
    r = metrics.open_set_report(torch.tensor([0, -1]), torch.tensor([0, -1]))
    assert r.nota_f1 == 1.0 and r.accuracy == 1.0


def test_ood_metrics_equal_sklearn_on_random_and_tied_scores(rng):
    from sklearn.metrics import average_precision_score, roc_auc_score

    for ties in (False, True):
        y = rng.integers(0, 2, 60)
        s = rng.integers(0, 5, 60).astype(float) if ties else rng.normal(size=60)
        assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
        assert metrics.aupr_in(y, s) == pytest.approx(average_precision_score(y, s))
        assert metrics.aupr_out(y, s) == pytest.approx(
            average_precision_score(1 - y, -s)
        )
        # brute force: the highest threshold accepting at least 95% of ID samples
        th = max(t for t in np.unique(s) if np.mean(s[y == 1] >= t) >= 0.95)
        assert metrics.fpr_at_tpr(y, s) == pytest.approx(np.mean(s[y == 0] >= th))
