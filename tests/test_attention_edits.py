"""Editing attention: the matrix views of DenseGeneral kernels, the built-in transformer text
classifier, its bias task end to end, and the erasers beside it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.baselines.bias import eraser_site, leace
from maskshift.controls import gradient_edits
from maskshift.envs import make
from maskshift.models import TransformerClassifier
from maskshift.run.build import task_fingerprint
from maskshift.tasks import (
    bias_task,
    default_split,
    get_leaf,
    matrix_shape,
    resolve_edit,
    retarget,
    task_from_model,
)


@pytest.fixture(scope="module")
def fresh():
    """An untrained transformer over 7 tokens of a 20-word vocabulary, and a batch of tokens
    with padding (0) at the end of each row."""
    model = TransformerClassifier(vocab_size=20, max_len=7, dim=16, heads=2, layers=2, mlp=24)
    tokens = jax.random.randint(jax.random.key(1), (5, 7), 1, 20)
    tokens = tokens.at[:, 5:].set(0).at[0, 2:].set(0)
    return model, model.init(jax.random.key(0), tokens), tokens


@pytest.fixture(scope="module")
def transformer_bias(toxic):
    return bias_task(dataset=toxic, model="transformer", edit=("Block_1/Attn/query",))


def test_attention_kernels_have_the_matrix_views_the_layers_multiply_by(fresh):
    model, params, _ = fresh
    specs = ["Block_0/Attn/query", "Block_0/Attn/out", "Block_1/Mlp_0", "Embed_0"]
    paths, splits = resolve_edit(params, specs)
    assert [p[-2:] for p in paths] == [("query", "kernel"), ("out", "kernel"),
                                       ("Mlp_0", "kernel"), ("Embed_0", "embedding")]
    shapes = [np.shape(get_leaf(params, p)) for p in paths]
    assert [matrix_shape(s, k) for s, k in zip(shapes, splits, strict=True)] == [(16, 16), (16, 16),
                                                                    (16, 24), (20, 16)]
    # the query view: the matrix the projection multiplies each token's vector by
    q = np.asarray(get_leaf(params, paths[0]))
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(x @ q.reshape(16, 16),
                               np.einsum("bd,dhk->bhk", x, q).reshape(3, 16), rtol=1e-5)
    # the output projection's view: heads x head_dim rows
    o = np.asarray(get_leaf(params, paths[1]))
    z = np.random.default_rng(1).standard_normal((3, 2, 8)).astype(np.float32)
    np.testing.assert_allclose(z.reshape(3, 16) @ o.reshape(16, 16),
                               np.einsum("bhk,hkd->bd", z, o), rtol=1e-5, atol=1e-6)
    assert default_split(paths[0], shapes[0]) == 1 and default_split(paths[1], shapes[1]) == 2


def test_an_explicit_split_and_the_refusals(fresh):
    _, params, _ = fresh
    paths, splits = resolve_edit(params, ["Block_0/Attn/out/kernel:1"])
    assert splits == (1,) and matrix_shape((2, 8, 16), 1) == (2, 128)
    with pytest.raises(ValueError, match="split :3 must be 1 to 2"):
        resolve_edit(params, ["Block_0/Attn/out/kernel:3"])
    with pytest.raises(ValueError, match="an integer"):
        resolve_edit(params, ["Block_0/Attn/out/kernel:x"])
    with pytest.raises(ValueError, match="not a kernel"):  # attention's biases are 2-D
        resolve_edit(params, ["Block_0/Attn/query/bias"])
    with pytest.raises(ValueError, match="not a kernel"):
        resolve_edit(params, ["Block_0/LayerNorm_0/scale"])
    with pytest.raises(ValueError, match=r"Block_0/Attn/query/kernel \[16, 2, 8\] as \[16, 16\]"):
        resolve_edit(params, ["Block_9/Attn/query"])
    with pytest.raises(ValueError, match="listed twice"):
        resolve_edit(params, ["Block_0/Attn/query", "Block_0/Attn/query/kernel"])


def test_each_stage_of_the_transformer_carries_the_padding_mask(fresh):
    model, params, tokens = fresh
    want = model.apply(params, tokens)
    assert model.num_stages == 6  # embed, 2 blocks, pool, Dense_0, Dense_1
    for k in range(model.num_stages):
        h = model.apply(params, tokens, stop=k)
        np.testing.assert_allclose(model.apply(params, h, start=k), want, rtol=1e-5, atol=1e-6)
    # a padded position does not move the logits, whatever its embedding
    other = jax.tree.map(lambda a: a, params)
    emb = other["params"]["Embed_0"]["embedding"]
    other["params"]["Embed_0"]["embedding"] = emb.at[0].set(100.0)
    np.testing.assert_allclose(model.apply(other, tokens), want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_masking_an_attention_projection_moves_the_bias_task(transformer_bias):
    task = transformer_bias
    assert task.matrix_shapes == ((32, 32),)
    env, params = make("MaskWorld-v0", task=task, rank=2)
    (mask,) = gradient_edits(env, params)
    assert mask.shape[1:] == (32, 32) and np.isfinite(np.asarray(mask)).all()
    before = task.report(task.params)
    after = task.report(env.params_for_edit((mask[-1],), params))
    # the greedy controller on the query projection raises the worst group
    assert after["worst_group_acc"] > before["worst_group_acc"] + 0.05


@pytest.mark.slow  # pretrains the transformer (~30 s)
def test_the_erasers_fold_into_dense_0_when_attention_is_edited(transformer_bias):
    site = eraser_site(transformer_bias)
    assert site.edit_paths == (("params", "Dense_0", "kernel"),)
    # a block's MLP is a dense kernel, but reads tokens inside the block: Dense_0 again
    mlp = eraser_site(retarget(transformer_bias, ("Block_1/Mlp_0",)))
    assert mlp.edit_paths == (("params", "Dense_0", "kernel"),)
    edited = leace(transformer_bias, jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(edited)[0]
    changed = [path for (path, a), b in zip(flat, jax.tree.leaves(transformer_bias.params),
                                            strict=True) if not np.array_equal(a, b)]
    names = {"/".join(k.key for k in path) for path in changed}
    assert names == {"params/Dense_0/kernel", "params/Dense_0/bias"}


@pytest.mark.slow  # pretrains the transformer (~30 s)
def test_retarget_moves_the_cache_with_the_edit(transformer_bias):
    task = retarget(transformer_bias, ("Block_0/Mlp_0", "Dense_0"))
    x = jnp.asarray(task.dataset.test.x[:4])
    np.testing.assert_allclose(task.suffix(task.params, task.prefix(task.params, x)),
                               task.apply_fn(task.params, x), rtol=1e-5, atol=1e-6)
    assert task.prefix(task.params, x).shape == (4, 7, 33)  # 32 channels + the mask
    with pytest.raises(ValueError, match="no staged built-in model"):
        retarget(dataclasses.replace(task, model=None), ("Dense_0",))


def test_a_tasks_fingerprint_tells_matrix_views_apart(fresh):
    model, params, tokens = fresh
    data = (np.asarray(tokens), np.array([0, 1, 2, 0, 1], np.int32))

    def task(spec):
        return task_from_model(model.apply, params, [spec], train=data, test=data,
                               num_classes=3)

    default = task("Block_0/Attn/out")
    assert task_fingerprint(default) == task_fingerprint(
        dataclasses.replace(default, edit_splits=None))  # the default view: as before views
    other = task("Block_0/Attn/out/kernel:1")
    assert other.matrix_shapes == ((2, 128),)
    assert task_fingerprint(other) != task_fingerprint(default)
