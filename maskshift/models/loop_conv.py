"""Convolutions as patches times a matrix, for the environments' step.

On XLA:CPU a convolution inside a loop body (``lax.scan``, ``while``: every rollout, the PPO
update, the controls' episode) runs far slower than the same convolution outside one
(jax-ml/jax#12868, open): a gradient step through the digits CNN's ``Conv_1`` on 1,078 examples
takes 0.014 s on its own and about 1 s per iteration inside a ``scan``. Written as the
edit's own matrix view (the kernel ``[kh, kw, c_in, c_out]`` as ``[kh*kw*c_in, c_out]``) times the
input's patches, gathered by plain slices, it runs at the outside-a-loop speed in both places,
with the same numbers (the patches are the same products, summed by a matrix product).

:func:`patches_conv` is a drop-in for ``lax.conv_general_dilated`` in the channels-last layout
Flax uses (any number of spatial dimensions, strides, kernel dilation, explicit or named
padding); anything else (grouped or input-dilated convolutions, negative padding, other
layouts) goes to ``lax.conv_general_dilated`` unchanged. :func:`loop_safe_convs` swaps it into
the ``flax.linen.Conv`` layers a function calls (all, or the listed ones);
:meth:`maskshift.tasks.Task.suffix` runs its edited convolutions under it on the CPU and GPU
backends, where a per-environment kernel makes XLA's convolution 2.7-3.5x slower (measured on an
H200 too: docs/layers.md), and leaves the TPU, not measured, to XLA
(:func:`maskshift.tasks.task.patched_convs`, :attr:`maskshift.tasks.Task.conv_impl`).
"""

from __future__ import annotations

import contextlib
import itertools

import flax.linen as nn
import jax.numpy as jnp
from jax import lax


def _channels_last(nd: int) -> lax.ConvDimensionNumbers:
    """Flax's layout: ``lhs (N, spatial..., C)``, ``rhs (spatial..., I, O)``, out as lhs."""
    spatial = tuple(range(1, nd + 1))
    return lax.ConvDimensionNumbers(lhs_spec=(0, nd + 1) + spatial,
                                    rhs_spec=(nd + 1, nd) + tuple(range(nd)),
                                    out_spec=(0, nd + 1) + spatial)


def _supported(lhs, rhs, padding, lhs_dilation, dimension_numbers, feature_group_count,
               batch_group_count) -> bool:
    nd = lhs.ndim - 2
    try:
        dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    except (TypeError, ValueError):
        return False
    return (dims == _channels_last(nd) and feature_group_count == 1 and batch_group_count == 1
            and all(d == 1 for d in (lhs_dilation or ()))
            and (isinstance(padding, str) or all(lo >= 0 and hi >= 0 for lo, hi in padding)))


def patches_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                 precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated``, computed as ``patches(lhs) @ rhs.reshape(-1, c_out)``."""
    if not _supported(lhs, rhs, padding, lhs_dilation, dimension_numbers, feature_group_count,
                      batch_group_count):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        batch_group_count, precision, preferred_element_type)
    nd = lhs.ndim - 2
    kernel = rhs.shape[:nd]
    strides = tuple(window_strides)
    dilation = tuple(rhs_dilation or (1,) * nd)
    reach = [dl * (k - 1) + 1 for k, dl in zip(kernel, dilation, strict=True)]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], reach, strides, padding)
    x = jnp.pad(lhs, [(0, 0), *[tuple(p) for p in padding], (0, 0)])
    out = [(size - r) // s + 1 for size, r, s in zip(x.shape[1:-1], reach, strides, strict=True)]
    cols = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = tuple(slice(o * dl, o * dl + (n - 1) * s + 1, s)
                       for o, dl, n, s in zip(offset, dilation, out, strides, strict=True))
        cols.append(x[(slice(None), *window, slice(None))])
    patches = jnp.concatenate(cols, axis=-1)  # [N, out..., prod(kernel) * c_in], kernel order
    return jnp.matmul(patches, rhs.reshape(-1, rhs.shape[-1]), precision=precision,
                      preferred_element_type=preferred_element_type)


def _swapper(layers):
    def swap(next_fun, args, kwargs, context):
        module = context.module
        if (type(module) is nn.Conv and context.method_name == "__call__"
                and (layers is None or tuple(module.path) in layers)
                and module.conv_general_dilated is None
                and module.conv_general_dilated_cls is None):
            swapped = module.clone(parent=None, conv_general_dilated=patches_conv)
            return swapped.apply({"params": module.variables["params"]}, *args, **kwargs)
        return next_fun(*args, **kwargs)
    return swap


@contextlib.contextmanager
def loop_safe_convs(enabled: bool, layers=None):
    """Within this context the ``flax.linen.Conv`` layers called (while tracing) compute with
    :func:`patches_conv` where ``enabled`` (which backends want it:
    :func:`maskshift.tasks.task.patched_convs`). ``layers``: the module paths to swap
    (``{("Conv_1",)}``); ``None``: every convolution."""
    if not enabled:
        yield
        return
    with nn.intercept_methods(_swapper(None if layers is None else set(map(tuple, layers)))):
        yield
