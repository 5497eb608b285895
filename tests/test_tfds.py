"""TFDS datasets through tfds.data_source, under tfds.testing.mock_data (never a download)."""

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")


from maskshift.cli import train as cli_train  # noqa: E402
from maskshift.data import DatasetNotFoundError, load_dataset  # noqa: E402
from maskshift.models import ImageCNN, default_model  # noqa: E402


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=120):
        yield


@pytest.mark.parametrize("name, shape, dense_in", [
    ("mnist", (28, 28, 1), 7 * 7 * 32),
    ("fashion_mnist", (28, 28, 1), 7 * 7 * 32),
    pytest.param("cifar10", (32, 32, 3), 4 * 4 * 128, marks=pytest.mark.slow),
])
def test_image_datasets_load_with_a_cnn_sized_for_them(mock_tfds, name, shape, dense_in):
    data = load_dataset(name, data_dir="/nonexistent/but/mocked")
    assert data.kind == "image" and data.num_classes == 10 and len(data.class_names) == 10
    assert data.input_shape == shape and data.train.x.dtype == np.float32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    # TFDS train -> train + val (10%, disjoint), TFDS test -> test
    assert len(data.train) == 108 and len(data.val) == 12 and len(data.test) == 120
    assert data.fingerprint() == load_dataset(name, data_dir="/x").fingerprint()  # deterministic
    model, config = default_model(data)
    assert isinstance(model, ImageCNN)
    import jax

    params = model.init(jax.random.key(0), data.train.x[:1])
    assert params["params"]["Dense_0"]["kernel"].shape == (dense_in, model.hidden)
    # the staged forward pass is the whole model
    h = model.apply(params, data.train.x[:3], stop=model.STAGE_OF["Dense_0"])
    full = model.apply(params, data.train.x[:3])
    np.testing.assert_allclose(model.apply(params, h, start=model.STAGE_OF["Dense_0"]), full,
                               rtol=1e-5, atol=1e-5)


def test_civil_comments_has_wilds_groups_labels_and_counterfactuals(mock_tfds):
    data = load_dataset("civil_comments", max_train=80, max_eval=40)
    assert data.kind == "text" and data.num_classes == 2
    assert data.group_names == ("none", "male", "female", "LGBTQ", "christian", "muslim",
                                "other_religions", "black", "white")
    assert len(data.train) == 80 and len(data.val) == 40 and len(data.test) == 40
    for s in ("train", "val", "test"):
        sp = data.split(s)
        assert sp.x.shape == sp.x_cf.shape and sp.x.shape[1] == 64
        assert set(np.unique(sp.y)) <= {0, 1}
        assert sp.group.min() >= 0 and sp.group.max() < len(data.group_names)
    # random mock scores in [0, 1]: comments mention groups, and some are toxic
    assert (data.train.group > 0).any() and 0 < data.train.y.mean() < 1
    assert data.vocab[:2] == ("<pad>", "<unk>") and len(data.vocab) > 2


def test_wilds_groups_pool_the_identity_columns():
    from maskshift.data.tfds import WILDS_GROUPS, wilds_groups

    cols = {c: np.zeros(4, np.float32) for cs in WILDS_GROUPS.values() for c in cs}
    cols["male"][0] = 0.9                       # -> male
    cols["bisexual"][1], cols["muslim"][1] = 0.6, 0.7  # the stronger mention wins -> muslim
    cols["transgender"][2] = 0.5                # pooled into LGBTQ, at the threshold
    cols["jewish"][3] = 0.4                     # below 0.5 -> none
    names = ("none", *WILDS_GROUPS)
    assert [names[g] for g in wilds_groups(cols)] == ["male", "muslim", "LGBTQ", "none"]


def test_civil_comments_tokenizer():
    from maskshift.data.tfds import _tokens

    assert _tokens(b"The Muslim guy's post, honestly!!") == ["the", "muslim", "guy's", "post",
                                                             "honestly"]


def test_a_missing_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python -m maskshift\.data\.prepare mnist "
                                                   r"--data-dir DIR"):
        load_dataset("mnist", data_dir=str(tmp_path))
    # the CLI turns it into one clear line and exit code 2, not a stack trace
    with pytest.raises(SystemExit) as exit_info:
        cli_train.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "run").exists()


def test_data_dir_is_refused_for_an_embedded_dataset():
    with pytest.raises(ValueError, match="ships inside maskshift"):
        load_dataset("digits", data_dir="/somewhere")


@pytest.mark.long
def test_train_cli_on_mnist_under_mock_data(tmp_path, capsys):
    out = tmp_path / "mnist-run"
    with tfds.testing.mock_data(num_examples=300):  # pretraining takes 128-example batches
        code = cli_train.main(["--env", "mask", "--heads", "flat", "--dataset", "mnist",
                               "--data-dir", str(tmp_path / "tfds"), "--num-envs", "8",
                               "--episode-length", "2", "--total-steps", "32", "--eval-batch",
                               "8", "--rank", "2", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "mnist" and res["env"] == "MaskWorld-v0"
    assert res["config"]["data_dir"] == str(tmp_path / "tfds")
    assert res["train"]["env_steps"] == 32
    for k in ("forget_acc", "retain_acc", "test_acc"):
        assert 0.0 <= res["after"][k] <= 1.0
    assert "maskshift: MaskWorld-v0 on mnist" in capsys.readouterr().out
