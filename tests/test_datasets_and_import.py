"""Data loaders, the torch-free import, estimator discovery and the demo command."""

import subprocess
import sys

import numpy as np
import pytest

from protolearn.datasets import DATA_ENV_VAR, load_clinc150, load_demo_data
from protolearn.utils import all_estimators


def test_import_protolearn_does_not_import_torch():
    code = (
        "import sys, protolearn, protolearn.classification, protolearn.metrics, "
        "protolearn.datasets, protolearn.model_selection; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_clinc150_shapes_and_subsets(clinc150):
    b = load_clinc150(subset="test", include_oos=False)
    assert b.data.shape == (4500, 384) and b.data.dtype == np.float32
    assert b.target.min() == 0 and b.target_names.shape == (150,)
    X, y = load_clinc150(subset="train", return_X_y=True)
    assert X.shape == (15100, 384) and (y == -1).sum() == 100
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=2e-3)


def test_load_clinc150_missing_file_names_both_ways(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=f"data_home=.*{DATA_ENV_VAR}"):
        load_clinc150(data_home=tmp_path)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"\\${DATA_ENV_VAR}"):
        load_clinc150()
    with pytest.raises(ValueError, match="subset"):
        load_clinc150(subset="dev")


def test_load_demo_data():
    d = load_demo_data("wine")
    assert d.X_train.dtype == np.float32
    assert d.X_train.shape[0] + d.X_test.shape[0] == 178
    np.testing.assert_allclose(d.X_train.mean(0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="name must be one of"):
        load_demo_data("mnist")


def test_all_estimators_filters():
    names = [n for n, _ in all_estimators("classifier")]
    assert "NearestPrototypeClassifier" in names
    with pytest.raises(ValueError, match="type_filter"):
        all_estimators("regressor")


def test_demo_command_writes_table_and_plots(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "protolearn.demo",
            "--output-dir",
            str(out),
            "--only",
            "nearest_prototype",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "NearestCentroid" in res.stdout
    assert (out / "results.md").read_text().count("\n") > 5
    assert len(list(out.glob("*.png"))) >= 2


def test_data_home_expands_user(clinc150, tmp_path, monkeypatch):
    # "~/..." as data_home or $PROTOLEARN_DATA, as scikit-learn's get_data_home allows
    # (was looked up literally: FileNotFoundError)
    from pathlib import Path

    from protolearn.datasets import find_data_file

    real = find_data_file("clinc150_minilm.npz")
    home = tmp_path / "home"
    (home / "emb").mkdir(parents=True)
    (home / "emb" / real.name).symlink_to(real)
    monkeypatch.setenv("HOME", str(home))
    assert find_data_file(real.name, "~/emb") == home / "emb" / real.name
    monkeypatch.setenv(DATA_ENV_VAR, "~/emb")
    X, y = load_clinc150(subset="val", return_X_y=True)
    assert X.shape == (3100, 384) and X.dtype == np.float32 and y.dtype == np.int64
    assert Path("~").expanduser() == home


def test_every_advertised_subpackage_imports():
    # __all__ / dir() listed "deep" and "embed" before they existed:
    # protolearn.deep raised ModuleNotFoundError
    import protolearn

    for name in protolearn.__all__:
        assert getattr(protolearn, name) is not None
