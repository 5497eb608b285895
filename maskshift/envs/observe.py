"""What a policy sees of an :class:`~maskshift.envs.worlds.EditWorld`: the observation vector.

**Observation** (a fixed-size vector in [-1, 1], whatever the layer size): for each edited matrix,
``tanh`` of the mean, mean-absolute and max-absolute deviation from the original (``M - 1``, or
``S / rms(W0)``) and of the mean-absolute deviation of its rows and of its columns pooled into
``obs_bins`` bins each; then ``tanh`` of the objective's 4 metrics on the last minibatch; then
``t / T``.

With ``observation="gradient"`` a **unit block** follows, for each edited matrix: ``F`` features
per input unit (row) and per output unit (column), ``F = 2 r + 2``, so it grows with ``m + n``, not
``m * n``. They are MEND-style factors of the gradients of the two reward terms with respect to the
current edit, on a share of the step's train minibatch (by default the first quarter of each
part's rows, ``EditWorld(gradient_share=...)``; the metrics read every row): for each term's
gradient ``G [m, n]``, ``V = G^T G P`` and ``U = G V`` for a fixed probe matrix ``P [n, r]``
(one step of subspace iteration; each column scaled to unit RMS, so ``U V^T`` spans ``G``'s
leading directions), then each row's and column's mean and mean-absolute deviation. At reset
they are those of the original weights on the whole train split (``EnvParams.reset_units``,
computed once by ``make_params``).

``observation="controller"`` adds ``r`` features per unit (``F = 3 r + 2``, after the edit term's):
the same factors of the greedy gradient controller's direction on the minibatch,
``g_edit / |g_edit| + w g_utility / |g_utility|`` (norms over every edited matrix, ``w`` the
objective's ``control_utility_weight``; :mod:`maskshift.controls.gradient`). A unit-head policy
starts out following them (:class:`~maskshift.agents.networks.UnitHead`): PPO learns corrections
to the fixed rule rather than the rule itself.

``observation="controller-step"`` has the same features, but its ``r`` controller features per
unit are the greedy controller's **step itself** on the minibatch: the factors of the top-``r``
approximation of its direction (a randomised SVD: :func:`top_factors`), scaled so the step's
largest entry is :data:`STEP_SATURATION`, exactly as the controller scales its action
(:func:`saturated_factors`), and the gradients are read on the whole minibatch (the world's
``gradient_share`` defaults to 1 for it). A unit-head policy at skip gain 1 then starts out as
the minibatch controller. Measured on the Fashion-MNIST CNN's last convolution, the step factored
this way forgets where the subspace-iteration factors at any gain do not (docs/layers.md).

:func:`controller_direction` lives here, beside the observation that factors it: the gradient
controls (:mod:`maskshift.controls`) step along the same direction, and import it from here, so
the environments never import the controls that act on them.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
import optax

from maskshift._types import Array

OBSERVATIONS = ("summary", "gradient", "controller", "controller-step")
# the observations whose unit block ends in the controller's features (a residual policy follows)
CONTROLLER_OBSERVATIONS = ("controller", "controller-step")
# the largest entry of one controller step's ``U V^T / sqrt(r)`` (``tanh(3) = 0.995``)
STEP_SATURATION = 3.0


def controller_mix(g_utility: tuple, g_edit: tuple, utility_weight: float) -> Array:
    """``[w / |g_utility|, 1 / |g_edit|]``, each norm over every edited matrix: the weights of
    the greedy gradient controller's step direction ``g_edit / |g_edit| + w g_utility /
    |g_utility|`` (:mod:`maskshift.controls.gradient`)."""
    nu, ne = optax.tree.norm(g_utility), optax.tree.norm(g_edit)
    return jnp.stack([utility_weight / jnp.maximum(nu, 1e-30), 1.0 / jnp.maximum(ne, 1e-30)])


def controller_direction(g_utility: tuple, g_edit: tuple, utility_weight: float) -> tuple:
    """The greedy gradient controller's step direction per edited matrix (see
    :func:`controller_mix`), which the controller observation also factors."""
    a = controller_mix(g_utility, g_edit, utility_weight)
    return tuple(a[1] * e + a[0] * u for u, e in zip(g_utility, g_edit, strict=True))


@functools.cache
def probes(n: int, k: int) -> np.ndarray:
    """A fixed ``[n, k]`` Gaussian probe matrix (seeded: the same for every run)."""
    return np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)


def unit_rms(x: Array) -> Array:
    """``x [k, c]`` with each column scaled to unit RMS."""
    return x / jnp.maximum(jnp.sqrt(jnp.mean(x * x, 0, keepdims=True)), 1e-30)


def gradient_factors(g: Array, probes) -> tuple[Array, Array]:
    """``U = G V``, ``V = G^T G P`` (``[m, k]``, ``[n, k]``), each column at unit RMS."""
    return term_factors([g], probes)[0]


def term_factors(terms, probes, mix: Array | None = None) -> list[tuple[Array, Array]]:
    """:func:`gradient_factors` of each term ``G_t [m, n]`` of ``terms`` and, given ``mix [T]``,
    then of their mixture ``sum_t mix[t] G_t``, without forming it: each of the iteration's three
    products is linear in ``G``, so the mixture's products are the terms' products mixed, and
    every term is read three times, the mixture never. The terms stay separate arrays and
    ``G^T Y`` is a product summed over rows, which XLA:CPU fuses into one read of ``G``: no
    ``[m, n]`` array is stacked or transposed for a product (docs/performance.md)."""
    k = probes.shape[1]

    def mixed(xs):
        return sum(a * x for a, x in zip(mix, xs, strict=True))

    def beside(own, x):  # a term's own block, then the mixture's: [d, 2k]
        return jnp.concatenate([own, x], -1)

    def t_times(g, y):  # G^T Y, fused into one pass over G
        return jnp.sum(g[:, :, None] * y[:, None, :], axis=0)

    y = [g @ jnp.asarray(probes) for g in terms]  # G P
    if mix is None:
        v = [t_times(g, yt) for g, yt in zip(terms, y, strict=True)]  # G^T (G P)
        return [(unit_rms(g @ vt), unit_rms(vt)) for g, vt in zip(terms, v, strict=True)]
    y_mix = mixed(y)
    z = [t_times(g, beside(yt, y_mix)) for g, yt in zip(terms, y, strict=True)]
    v, v_mix = [zt[:, :k] for zt in z], mixed([zt[:, k:] for zt in z])
    w = [g @ beside(vt, v_mix) for g, vt in zip(terms, v, strict=True)]
    u, u_mix = [wt[:, :k] for wt in w], mixed([wt[:, k:] for wt in w])
    return [*((unit_rms(ut), unit_rms(vt)) for ut, vt in zip(u, v, strict=True)),
            (unit_rms(u_mix), unit_rms(v_mix))]


def top_factors(g: Array, probes, rank: int) -> tuple[Array, Array, Array]:
    """The top-``rank`` singular triplets of ``g [m, n]`` by a randomised SVD: one power
    iteration from ``probes [n, k]`` (``k > rank`` oversamples), an orthonormal basis of the
    range, and the SVD of the small ``[k, n]`` projection. ``(u [m, rank], s [rank],
    v [n, rank])``. Under ``vmap`` on a 2-core CPU about 10x faster than ``jnp.linalg.svd``
    of the whole matrix (64 x ``[1568, 64]``: 26 ms against 244 ms)."""
    q, _ = jnp.linalg.qr(g @ (g.T @ (g @ jnp.asarray(probes))))
    ub, s, vt = jnp.linalg.svd(q.T @ g, full_matrices=False)
    return (q @ ub)[:, :rank], s[:rank], vt[:rank].T


def saturated_factors(u: Array, s: Array, v: Array, saturation: float = STEP_SATURATION):
    """The factors ``(U [m, r], V [n, r])`` of the step along ``u diag(s) v^T``: ``U V^T /
    sqrt(r)`` is that matrix scaled so its largest entry is ``saturation`` (the step's ``tanh``
    saturates there), split evenly between the two factors. The greedy controller's action and
    the controller-step observation both take this scaling."""
    r = s.shape[0]
    approx = (u * s) @ v.T  # [m, n]
    a = jnp.sqrt(saturation * math.sqrt(r) / jnp.maximum(jnp.abs(approx).max(), 1e-30))
    root = jnp.sqrt(s) * a
    return u * root, v * root


def pool(x: Array, bins: int) -> Array:
    """Mean of ``x [k]`` over ``bins`` contiguous, nearly equal bins (``[bins]``; empty bins 0).

    A product with a constant ``[k, bins]`` averaging matrix: under ``vmap`` a segment sum
    becomes a scatter, which XLA:CPU runs element by element."""
    return x @ jnp.asarray(pool_matrix(x.shape[0], bins))


@functools.cache
def pool_matrix(k: int, bins: int) -> np.ndarray:
    """``[k, bins]``: column ``b`` averages the entries of bin ``b``."""
    ids = (np.arange(k) * bins) // k
    onehot = (ids[:, None] == np.arange(bins)[None, :]).astype(np.float32)
    return onehot / np.maximum(onehot.sum(0, keepdims=True), 1.0)


def gradient_rows(batch: dict, share: float) -> dict:
    """The first ``ceil(share * rows)`` rows of every array of a minibatch (its draws are
    independent, so they are a uniform sub-sample of it)."""
    return {k: v[: max(1, math.ceil(share * v.shape[0]))] for k, v in batch.items()}


def unit_features(observation: str, rank: int) -> int:
    """Features per unit (row or column) of the unit block: 0 for the summary observation."""
    if observation in CONTROLLER_OBSERVATIONS:
        return 3 * rank + 2
    return {"summary": 0, "gradient": 2 * rank + 2}[observation]


def unit_block(world, edit: tuple, grads: tuple[tuple, tuple], params) -> Array:
    """The flat per-unit features of every edited matrix of ``world`` (see the module
    docstring); ``grads``: the ``(utility, edit)`` reward terms' gradients, each a tuple of
    ``[m, n]``, one per edited matrix."""
    feats = []
    g_utility, g_edit = grads
    mix = None
    if world.observation in CONTROLLER_OBSERVATIONS:  # the controller's direction, this minibatch
        mix = controller_mix(g_utility, g_edit, world.task.objective.control_utility_weight)
    step = world.observation == "controller-step"
    for e, g_u, g_e, w0 in zip(edit, g_utility, g_edit, params.task.originals, strict=True):
        # utility, edit (, the controller's direction, or its step)
        n, r = g_u.shape[1], world.rank
        factors = term_factors([g_u, g_e], probes(n, r), None if step else mix)
        if step:
            direction = mix[0] * g_u + mix[1] * g_e
            k = min(2 * r, *g_u.shape)  # oversampled
            factors.append(saturated_factors(*top_factors(direction, probes(n, k), r)))
        rows, cols = [u for u, _ in factors], [v for _, v in factors]
        dev = world.deviation(e, w0)
        a = jnp.abs(dev)
        rows.append(jnp.tanh(jnp.stack([dev.mean(1), a.mean(1)], 1)))
        cols.append(jnp.tanh(jnp.stack([dev.mean(0), a.mean(0)], 1)))
        feats += [jnp.concatenate(rows, 1).ravel(), jnp.concatenate(cols, 1).ravel()]
    return jnp.concatenate(feats)


def observation_vector(world, edit: tuple, metrics: Array, time, params, units=None) -> Array:
    """The observation of ``edit`` after a step: structure, metrics, time (, the unit block)."""
    feats = []
    for e, w0 in zip(edit, params.task.originals, strict=True):
        dev = world.deviation(e, w0)  # [m, n]
        a = jnp.abs(dev)
        feats.append(jnp.stack([dev.mean(), a.mean(), a.max()]))
        feats.append(pool(a.mean(1), world.obs_bins))
        feats.append(pool(a.mean(0), world.obs_bins))
    structure = jnp.tanh(jnp.concatenate(feats))
    t = jnp.asarray(time, jnp.float32) / params.max_steps_in_episode
    parts = [structure, jnp.tanh(metrics), t[None]]
    return jnp.concatenate(parts if units is None else [*parts, units])


def reset_observation(world, metrics: Array, units=None) -> Array:
    """The observation of the original weights. They deviate by exactly 0 everywhere, so every
    structure feature is tanh(0) = 0: the vector :func:`observation_vector` gives, without a pass
    over the matrices (gymnax computes a reset on every step to auto-reset)."""
    structure = jnp.zeros(world.summary_size - len(world.task.objective.metric_names) - 1)
    parts = [structure, jnp.tanh(metrics), jnp.zeros(1)]
    return jnp.concatenate(parts if units is None else [*parts, units])
