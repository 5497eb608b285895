"""Editing convolutions: patches times the kernel's matrix view (maskshift.models.loop_conv) give
XLA's numbers with no convolution left in the step; a conv edit's episode; two layers at once."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend.core import jaxprs_in_params

from maskshift.controls import gradient_edits
from maskshift.envs import make
from maskshift.models.loop_conv import loop_safe_convs, patches_conv
from maskshift.tasks import unlearning_task

CONVS = [
    {"features": 4, "kernel_size": (3, 3)},
    {"features": 4, "kernel_size": (2, 3), "padding": ((1, 0), (2, 1)), "kernel_dilation": (2, 1)},
    {"features": 4, "kernel_size": (3, 3), "feature_group_count": 2},  # falls back to lax
    # the slow suite's: more strides, paddings and ranks
    *(pytest.param(c, marks=pytest.mark.slow) for c in [
        {"features": 4, "kernel_size": (3, 3), "strides": 2},
        {"features": 4, "kernel_size": (3, 3), "padding": "VALID"},
        {"features": 4, "kernel_size": (4, 4), "strides": 3},
        {"features": 4, "kernel_size": (5,), "strides": 2},
        {"features": 2, "kernel_size": (2, 2, 2)},
        {"features": 4, "kernel_size": (3, 3), "padding": "CIRCULAR"},
    ]),
]


def _primitives(fn, *args) -> set[str]:
    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn.primitive.name
            for sub in jaxprs_in_params(eqn.params):
                yield from walk(sub)
    return set(walk(jax.make_jaxpr(fn)(*args).jaxpr))


@pytest.mark.parametrize("conv", CONVS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_flax_convs_compute_the_same_as_patches(conv):
    module = nn.Conv(**conv)
    x = jax.random.normal(jax.random.key(1), (3,) + (7,) * len(conv["kernel_size"]) + (4,))
    params = module.init(jax.random.key(0), x)
    want = module.apply(params, x)
    with loop_safe_convs(True):
        got = jax.jit(module.apply)(params, x)
        used = _primitives(module.apply, params, x)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    grouped = conv.get("feature_group_count", 1) > 1
    assert ("conv_general_dilated" in used) == grouped
    with loop_safe_convs(False):
        assert "conv_general_dilated" in _primitives(module.apply, params, x)


def test_patches_conv_is_a_drop_in_for_lax_with_its_gradient():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
    dims = ("NHWC", "HWIO", "NHWC")

    def loss(conv, w):
        return jnp.sum(jnp.tanh(conv(x, w, (1, 1), "SAME", dimension_numbers=dims)) ** 2)

    np.testing.assert_allclose(jax.grad(lambda w: loss(patches_conv, w))(w),
                               jax.grad(lambda w: loss(lax.conv_general_dilated, w))(w),
                               atol=1e-4, rtol=1e-4)
    # another layout goes to lax unchanged
    nchw = jnp.moveaxis(x, -1, 1)
    oihw = jnp.transpose(w, (3, 2, 0, 1))
    np.testing.assert_array_equal(
        patches_conv(nchw, oihw, (1, 1), "SAME"),
        lax.conv_general_dilated(nchw, oihw, (1, 1), "SAME"))


@pytest.mark.slow
def test_a_conv_edit_steps_without_a_convolution_and_matches_lax(digits, digits_model):
    task = unlearning_task(7, dataset=digits, edit=("Conv_1",))
    assert task.conv_impl == "auto"
    with pytest.raises(ValueError, match="Unknown conv_impl 'fft'"):
        dataclasses.replace(task, conv_impl="fft")
    runs = {}
    for impl in ("patches", "lax"):
        env, params = make("mask", task=dataclasses.replace(task, conv_impl=impl),
                           max_steps_in_episode=1)
        h = params.task.train["h"][:4]
        used = _primitives(env.task.suffix, params.task.params, h)
        assert ("conv_general_dilated" in used) == (impl == "lax")
        runs[impl] = gradient_edits(env, params)
    for a, b in zip(runs["patches"], runs["lax"], strict=True):
        assert a.shape == (2, 144, 32)
        assert not np.allclose(a[-1], 1.0)  # the episode moved the mask
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_auto_computes_frozen_convs_as_patches_only_in_a_chunked_pass(digits, digits_model):
    task = unlearning_task(7, dataset=digits, edit=("Conv_0",))  # Conv_1 after it, frozen
    x = jnp.asarray(digits.train.x[:6])
    one_pass = _primitives(task.suffix, task.params, x)
    assert "conv_general_dilated" in one_pass  # a step's frozen Conv_1: XLA's convolution
    chunked = dataclasses.replace(task, pass_size=2 * int(np.prod(x.shape[1:])))  # 3 chunks
    used = _primitives(chunked.suffix, chunked.params, x)
    assert "scan" in used and "conv_general_dilated" not in used  # a loop: every conv patches
    np.testing.assert_allclose(chunked.suffix(task.params, x), task.suffix(task.params, x),
                               rtol=1e-5, atol=1e-5)


def test_a_convolution_and_a_dense_layer_edited_in_one_action(digits, digits_model):
    task = unlearning_task(7, dataset=digits, edit=("Conv_1", "Dense_0"))
    assert task.edited_layers == (("Conv_1",), ("Dense_0",))
    env, params = make("shift", task=task, max_steps_in_episode=2)
    assert params.task.train["h"].shape[1:] == (8, 8, 16)  # cached below Conv_1, the first
    assert env.shapes == ((144, 32), (512, 64))
    assert env.action_size == (144 + 32 + 512 + 64) * env.rank
    conv, dense = gradient_edits(env, params)
    for edit in (conv, dense):  # each kernel its own factors, both moved by the controller
        assert float(np.abs(edit[-1]).max()) > 0
    first = env.params_for_edit((conv[-1], dense[-1]), params)
    kernel = first["params"]["Conv_1"]["kernel"]
    np.testing.assert_allclose(kernel, (params.task.originals[0] + conv[-1]).reshape(3, 3, 16, 32),
                               rtol=1e-6)


def test_auto_patches_edited_convs_on_cpu_and_gpu_and_leaves_the_tpu_to_xla():
    from maskshift.tasks.task import patched_convs

    assert patched_convs("auto", False, "cpu") == (True, False)  # the edited ones
    assert patched_convs("auto", True, "cpu") == (True, True)  # a chunked pass: every one
    assert patched_convs("auto", True, "gpu") == (True, False)  # measured on an H200
    assert patched_convs("auto", False, "tpu") == (False, False)
    assert patched_convs("patches", False, "tpu") == (True, True)
    assert patched_convs("lax", True, "cpu") == (False, False)
