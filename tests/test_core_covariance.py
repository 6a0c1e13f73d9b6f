"""_core._covariance: the per-type covariance estimators against scikit-learn's, and the
streamed statistics against the batch ones."""

import numpy as np
import pytest
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from protolearn._core import _covariance, _streaming


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(size=(120, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0] + 3 * np.eye(5)[y]
    return X, y


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
def test_unregularised_estimates_equal_sklearn_gaussian_mixture(data, covariance_type):
    """Without shrinkage or pooling, each per-type estimator is scikit-learn's
    ``GaussianMixture`` M-step (soft responsibilities)."""
    X, _ = data
    resp = np.random.default_rng(1).dirichlet(np.ones(4), size=X.shape[0])
    nk, means, cov, intensities = _covariance.estimate_gaussian_parameters(
        X, resp, covariance_type, reg_covar=1e-6
    )
    nk_ref, means_ref, cov_ref = _estimate_gaussian_parameters(
        X, resp, 1e-6, covariance_type
    )
    np.testing.assert_allclose(nk, nk_ref, rtol=1e-13)
    np.testing.assert_allclose(means, means_ref, rtol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-10, atol=1e-12)
    assert np.all(intensities == 0)


@pytest.mark.parametrize("covariance_type", _covariance.COVARIANCE_TYPES)
@pytest.mark.parametrize("shrinkage", [None, 0.2, "ledoit_wolf", "oas"])
def test_streamed_statistics_give_the_batch_estimates(data, covariance_type, shrinkage):
    """The same per-type estimators read residual rows (batch) or merged moments
    (stream) and agree to rounding, intensities included."""
    X, y = data
    stats, groups = None, None
    for part in np.array_split(np.random.default_rng(2).permutation(120), 4):
        groups, stats = _streaming.update_group_stats(
            stats, groups, X[part], y[part], fourth=True
        )
    kw = dict(shrinkage=shrinkage, pooling=0.3, reg_covar=1e-6)
    got = _streaming.gaussian_parameters_from_stats(stats, covariance_type, **kw)
    want = _covariance.estimate_gaussian_parameters(
        X, np.eye(3)[y], covariance_type, **kw
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_unknown_covariance_type_is_refused(data):
    X, y = data
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        _covariance.estimate_gaussian_parameters(X, np.eye(3)[y], "banded")
