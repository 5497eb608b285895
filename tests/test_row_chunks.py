"""Whole-split passes in chunks of rows (maskshift.models.row_chunks): the same outputs and
gradients as one pass, for arrays and pytrees, with an overlapping last chunk; and a task's
controller gradients and base metrics unchanged by the chunking."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.controls.gradient import term_gradients
from maskshift.envs import make
from maskshift.models.row_chunks import chunk_rows, in_row_chunks
from maskshift.tasks import unlearning_task


def _rowwise(w, h):
    return jnp.tanh(h["a"] @ w) + h["b"][:, None] * w.sum(0)


def test_chunk_rows_counts_every_leaf_and_keeps_one_row():
    h = {"a": jnp.zeros((10, 3, 4)), "b": jnp.zeros((10,))}
    assert chunk_rows(h, 26) == 2  # 13 elements a row
    assert chunk_rows(h, 5) == 1


@pytest.mark.parametrize("n", [7, 12, 23])  # fits, divides evenly, overlapping last chunk
def test_chunks_give_one_pass_outputs_and_gradients(n):
    k = jax.random.split(jax.random.key(0), 3)
    w = jax.random.normal(k[0], (5, 3))
    h = {"a": jax.random.normal(k[1], (n, 5)), "b": jax.random.normal(k[2], (n,))}
    max_elements = 6 * 4  # 4 rows of 6 elements a chunk

    def loss(w, chunked):
        out = in_row_chunks(lambda r: _rowwise(w, r), h, max_elements) if chunked \
            else _rowwise(w, h)
        return (out ** 2 * jnp.arange(n)[:, None]).sum(), out

    (l0, o0), g0 = jax.value_and_grad(loss, has_aux=True)(w, False)
    (l1, o1), g1 = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(w, True)
    assert o1.shape == (n, 3)
    np.testing.assert_allclose(o1, o0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5)
    if n > 4:  # really chunked: a loop in the program
        jaxpr = str(jax.make_jaxpr(lambda w: loss(w, True))(w))
        assert "scan" in jaxpr


@pytest.mark.slow
def test_a_task_chunks_its_whole_split_with_the_same_gradients(digits, digits_model):
    task = unlearning_task(7, dataset=digits, edit=("Conv_1",))
    with pytest.raises(ValueError, match="pass_size must be at least 1"):
        dataclasses.replace(task, pass_size=0)
    out = {}
    for size in (task.pass_size, 8 * 8 * 16 * 100):  # one pass; 100 rows a chunk (11 chunks)
        env, params = make("mask", task=dataclasses.replace(task, pass_size=size),
                           max_steps_in_episode=1)
        _, state = env.reset_env(jax.random.key(0), params)
        grads = jax.jit(lambda e, p, env=env: term_gradients(env, e, p))(state.edit, params)
        out[size] = (params.task.base_metrics, grads)
    (b0, g0), (b1, g1) = out.values()
    np.testing.assert_allclose(b1, b0, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        assert float(jnp.abs(b).max()) > 0
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(jnp.abs(b).max()))
