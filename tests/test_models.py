import shutil
import threading
import time
from dataclasses import replace as dataclasses_replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.metrics import bias_report, unlearning_report
from maskshift.models import pretrain, pretrained


def test_digits_cnn_is_accurate(digits, digits_model):
    rep = unlearning_report(digits_model.model.apply, digits_model.params, digits, 7)
    assert rep["test_acc"] >= 0.95
    assert rep["forget_acc"] >= 0.9


def test_second_call_loads_the_same_params_from_cache(digits, digits_model):
    again = pretrained(digits)
    assert again.from_cache and again.cache_path == digits_model.cache_path
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(digits_model.params),
                    strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def private_entry(toxic_model, tmp_path, monkeypatch):
    """A copy of the toxic model's cache entry in a cache of this test's own (the run's cache is
    shared by every worker: damaging it would reach tests running at the same time)."""
    entry = tmp_path / "cache" / "models" / toxic_model.cache_path.name
    shutil.copytree(toxic_model.cache_path, entry)
    monkeypatch.setenv("MASKSHIFT_CACHE_DIR", str(tmp_path / "cache"))
    return entry


def test_corrupt_cache_entry_is_rebuilt_with_a_warning(toxic, toxic_model, private_entry):
    entry = private_entry
    # damage every stored array file of the entry
    files = [p for p in (entry / "params").rglob("*") if p.is_file() and p.stat().st_size > 64]
    assert files
    for f in files:
        data = bytearray(f.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 32] = b"\x00" * 32
        f.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt or incompatible"):
        rebuilt = pretrained(toxic)
    assert not rebuilt.from_cache
    for a, b in zip(jax.tree.leaves(rebuilt.params), jax.tree.leaves(toxic_model.params),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # same seed -> same model
    assert rebuilt.cache_path == entry and pretrained(toxic).from_cache  # good again


def test_incompatible_cache_metadata_is_rebuilt(toxic, private_entry):
    meta = private_entry / "meta.json"
    meta.write_text(meta.read_text().replace('"format": 1', '"format": 999'))
    with pytest.warns(RuntimeWarning, match="metadata mismatch"):
        assert not pretrained(toxic).from_cache


@pytest.mark.parametrize("fixture", ["digits", "toxic"])
def test_staged_forward_equals_full_forward(request, fixture):
    data = request.getfixturevalue(fixture)
    target = request.getfixturevalue(f"{fixture}_model")
    x = jnp.asarray(data.test.x[:32])
    full = target.model.apply(target.params, x)
    for k in range(1, target.model.num_stages):
        h = target.model.apply(target.params, x, stop=k)
        np.testing.assert_allclose(target.model.apply(target.params, h, start=k), full,
                                   rtol=1e-5, atol=1e-5)


def test_text_classifier_has_a_real_measurable_bias(toxic, toxic_model):
    rep = bias_report(toxic_model.model.apply, toxic_model.params, toxic)
    assert rep["worst_group_acc"] <= rep["accuracy"] - 0.10
    assert rep["flip_rate"] >= 0.10
    assert rep["fpr_gap"] >= 0.10
    # the model is not useless: it gets the toxic sentences and the unmarked ones right
    assert rep["group_acc"]["none"][0] >= 0.9 and rep["group_acc"]["none"][1] >= 0.9


def test_two_processes_asking_for_one_model_train_it_once(toxic, tmp_path, monkeypatch):
    """The second caller waits on the entry's lock while the first trains, then loads the
    first's result (threads here: ``flock`` locks separate opens of the lock file alike)."""
    monkeypatch.setenv("MASKSHIFT_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    train = pretrain.train_classifier

    def slow_train(model, dataset, key, config):
        calls.append(1)
        time.sleep(0.5)  # long enough for the other caller to reach the lock
        return train(model, dataset, key, dataclasses_replace(config, epochs=1))

    monkeypatch.setattr(pretrain, "train_classifier", slow_train)
    got = [None, None]

    def ask(i):
        got[i] = pretrained(toxic, seed=7)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(g.from_cache for g in got) == [False, True]
    for a, b in zip(jax.tree.leaves(got[0].params), jax.tree.leaves(got[1].params), strict=True):
        np.testing.assert_array_equal(a, b)
