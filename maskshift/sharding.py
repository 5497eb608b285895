"""One code path for 1 CPU, several GPUs or a TPU slice: the environment batch is sharded.

Every per-environment array (environment state, observations, actions, PRNG keys) has the
environment batch as its leading axis; it is laid out over a 1-D :class:`jax.sharding.Mesh` whose
single axis is named ``"envs"``, with ``NamedSharding(mesh, P("envs"))``. Everything shared by all
environments (the task's weights and cached activations, the policy) is replicated. ``jit`` then
partitions the program over the mesh; no ``pmap``.

On one device the mesh has one entry and the program is the unsharded one. For several hosts (a
TPU pod slice, multi-node GPUs), call :func:`jax.distributed.initialize` in every process before
anything else touches JAX (the train command's ``distributed`` option does); ``jax.devices()``
then lists the devices of every host and the same mesh spans them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "envs"


def env_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices``: a count (the first ``n`` of ``jax.devices()``), a list of
    devices, or ``None`` for every visible device."""
    available = jax.devices()
    if devices is None:
        devs = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(f"Asked for {devices} devices but {len(available)} are visible "
                             f"({available[0].platform}); pass a count between 1 and "
                             f"{len(available)}.")
        devs = available[:devices]
    else:
        devs = list(devices)
    return Mesh(np.asarray(devs), (AXIS,))


def mesh_size(mesh: Mesh | None) -> int:
    """How many devices ``mesh`` spans (``None``: placement left to JAX, one device)."""
    return 1 if mesh is None else int(mesh.devices.size)


def check_divisible(num_envs: int, mesh: Mesh) -> None:
    k = mesh.devices.size
    if num_envs % k:
        lo = max(k, num_envs // k * k)
        raise ValueError(f"{num_envs} environments cannot be split evenly over {k} devices; set "
                         f"the environment count (`num_envs`) to a multiple of {k} (e.g. {lo} or "
                         f"{lo + k}), or use a device count that divides {num_envs} (`devices`).")


def check_chunk(num_envs: int, chunk: int | None, shards: int = 1) -> None:
    """``chunk`` environments per group on each of ``shards`` devices must divide each device's
    share of ``num_envs``."""
    if chunk is None:
        return
    per = num_envs // shards
    if chunk < 1 or per % chunk:
        where = f"the {per} environments on each of {shards} devices" if shards > 1 else \
            f"{num_envs} environments"
        raise ValueError(f"An environment chunk of {chunk} does not divide {where}; choose a "
                         "divisor of that count (`env_chunk`).")


def device_memory_bytes() -> int:
    """The memory of one of this process's devices: an accelerator's limit, or the host's RAM on
    CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def env_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a per-environment array: leading axis split over the mesh."""
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def constrain_envs(tree, mesh: Mesh | None):
    """Inside ``jit``: lay out every leaf of ``tree`` (leading axis = environments) over ``mesh``.
    With ``mesh=None`` this is the identity."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, env_sharding(mesh))


def put_envs(tree, mesh: Mesh):
    """Outside ``jit``: place per-environment arrays on the mesh, split along their first axis."""
    return jax.device_put(tree, env_sharding(mesh))


def put_replicated(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


def num_shards(x: jax.Array) -> int:
    """How many distinct pieces ``x``'s leading axis is split into across devices (of every
    process)."""
    pieces = x.sharding.devices_indices_map(x.shape).values()
    return len({(idx[0].start, idx[0].stop) for idx in pieces})


def map_envs(fn, carry, xs, shared, chunk: int | None = None, mesh: Mesh | None = None):
    """``fn(carry_i, x_i, shared) -> (carry_i', y_i)`` for every environment ``i``; returns
    ``(carry', ys)``.

    ``carry`` (the environment state) and ``xs`` (keys, actions) are pytrees whose leaves have the
    environments as their leading axis; ``shared`` (the task, the env params) is the same for all.

    ``chunk=None``: one ``vmap`` over the whole batch (best on accelerators). ``chunk=k``: on each
    device of ``mesh`` (through :func:`jax.shard_map`; on one device, directly), a loop over that
    device's environments in contiguous groups of ``k``, each group a ``vmap``, so that a group's
    working set stays in the CPU's caches. The carry is updated in place: on XLA:CPU this steps a
    1024-environment unlearning batch 2.2–2.5x as fast as one ``vmap``
    (``benchmarks/throughput.py`` measures both). Two details keep XLA from copying the whole
    carry on every group, which would cost more than the step:

    - groups are plain dynamic slices of the leading axis, never a reshape of the carry;
    - group ``g``'s new carry is written back at the start of iteration ``g + 1``, after every read
      of its old value (written in iteration ``g``, the reads fused into later ops would follow
      the write, and XLA copies the buffer to keep them correct).

    Each result agrees with the single ``vmap``'s up to float rounding (XLA fuses the two programs
    differently). The ``ys`` leaves must have a numeric dtype (not PRNG keys).
    """
    vfn = jax.vmap(fn, in_axes=(0, 0, None))
    n = jax.tree.leaves(carry)[0].shape[0]
    shards = mesh_size(mesh)
    if chunk is None or chunk * shards >= n:
        return vfn(carry, xs, shared)
    check_chunk(n, chunk, shards)
    if shards == 1:
        return _map_groups(vfn, carry, xs, shared, chunk)
    spec = P(AXIS)
    return jax.shard_map(lambda c, x, s: _map_groups(vfn, c, x, s, chunk), mesh=mesh,
                         in_specs=(spec, spec, P()), out_specs=(spec, spec),
                         check_vma=False)(carry, xs, shared)


def _map_groups(vfn, carry, xs, shared, chunk: int):
    """:func:`map_envs` on one device: a ``fori_loop`` over groups of ``chunk`` environments."""
    n = jax.tree.leaves(carry)[0].shape[0]
    groups = n // chunk

    def take(tree, g):
        return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, g * chunk, chunk), tree)

    def put(tree, part, g):
        return jax.tree.map(lambda b, y: jax.lax.dynamic_update_slice_in_dim(b, y, g * chunk, 0),
                            tree, part)

    y_shapes = jax.eval_shape(lambda: vfn(take(carry, 0), take(xs, 0), shared)[1])
    ys = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape[1:], a.dtype), y_shapes)

    def body(g, loop):
        carry, pending, ys = loop
        carry = put(carry, pending, jnp.maximum(g - 1, 0))  # group g - 1's result (g = 0: itself)
        new, y = vfn(take(carry, g), take(xs, g), shared)
        return carry, new, put(ys, y, g)

    carry, pending, ys = jax.lax.fori_loop(0, groups, body, (carry, take(carry, 0), ys))
    return put(carry, pending, groups - 1), ys


def step_envs(env, keys, state, actions, env_params, chunk: int | None = None,
              mesh: Mesh | None = None):
    """``env.step`` for every environment of the batch (:func:`map_envs`): the same 6-tuple as
    ``jax.vmap(env.step, in_axes=(0, 0, 0, None))``."""
    def one(state, x, p):
        obs, state, reward, terminated, truncated, info = env.step(x[0], state, x[1], p)
        return state, (obs, reward, terminated, truncated, info)

    state, (obs, reward, terminated, truncated, info) = map_envs(
        one, state, (keys, actions), env_params, chunk, mesh)
    return obs, state, reward, terminated, truncated, info
