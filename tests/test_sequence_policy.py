"""A pool of requests in the middle of sequences (per-target starting models) and the policy
trained for sequences (maskshift.run.sequence_policy)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.data.forget_sets import disjoint_forget_sets
from maskshift.envs import MaskWorld, ShiftWorld
from maskshift.run import make_run_config
from maskshift.run.build import task_fingerprint
from maskshift.run.sequence_policy import check_sequence_depth, example_orders, sequence_orders
from maskshift.tasks import (
    UnlearnObjective,
    get_leaf,
    next_examples_task,
    next_request_task,
    sequence_examples_pool_task,
    sequence_pool_task,
    set_leaves,
    unlearning_task,
)


@pytest.fixture(scope="module")
def base():
    return unlearning_task((3,), batch_size=32)


@pytest.fixture(scope="module")
def pool(base):
    """Three requests: class 3 on the pretrained model, class 3 after 5 and class 1 after 5, 8,
    each later one on its own (made up) edited model."""
    w = np.asarray(get_leaf(base.params, base.edit_paths[0]))
    keep = np.random.default_rng(0).random(w.shape) > 0.3
    requests = [((), 3), ((5,), 3), ((5, 8), 1)]
    starts = [(w,), (w * keep,), (w * keep * 0.9,)]
    return requests, starts, sequence_pool_task(base, requests, starts)


def _single(base, request, start):
    """The same request as one request of a sequence (next_request_task)."""
    earlier, c = request
    task = dataclasses.replace(base, objective=dataclasses.replace(base.objective,
                                                                   forget_classes=(c,)))
    params = set_leaves(base.params, base.edit_paths, [jnp.asarray(start[0])])
    return next_request_task(task, params, earlier)


def _assert_target_reads_as(task, t, single, world, keys, base_atol=0.0):
    """Target ``t`` of the pool ``task`` is ``single`` (one request of a sequence): the same
    original metrics and observation, and after one step the same metrics and report."""
    env, env1 = world(task, rank=2), world(single, rank=2)
    params = env.make_params(max_steps_in_episode=3)
    params1 = env1.make_params(max_steps_in_episode=3)
    action = jax.random.normal(jax.random.key(1), (env.action_size,))
    np.testing.assert_allclose(params.task.base_metrics[t], params1.task.base_metrics[0],
                               rtol=0, atol=base_atol)
    obs, state = env.reset_to(t, params)
    obs1, state1 = env1.reset_to(0, params1)
    np.testing.assert_allclose(obs, obs1, rtol=0, atol=base_atol)
    at = env.at_target(params, t)
    edit = env.next_edit(state.edit, action, at)
    edit1 = env1.next_edit(state1.edit, action, params1)
    np.testing.assert_allclose(env.metrics_on(edit, env.train_split(at, t), at),
                               env1.metrics_on(edit1, env1.train_split(params1), params1),
                               rtol=0, atol=1e-6)
    # the report leaves the earlier requests out, as the request's own task does
    got = task.report(env.params_for_edit(edit, at), "val", False, t)
    want = single.report(env1.params_for_edit(edit1, params1), "val", False)
    for key in keys:
        assert got[key] == pytest.approx(want[key], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("world", [MaskWorld, ShiftWorld])
def test_a_pool_target_reads_exactly_as_its_request_of_a_sequence(base, pool, world):
    requests, starts, task = pool
    for t in (1, 2):  # after earlier requests, on their edited models
        _assert_target_reads_as(task, t, _single(base, requests[t], starts[t]), world,
                                ("retain_acc", "forget_acc"))


def test_a_target_without_earlier_requests_is_the_pretrained_task(base, pool):
    _, _, task = pool
    env, env1 = MaskWorld(task, rank=2), MaskWorld(base, rank=2)
    p, p1 = env.make_params(), env1.make_params()
    np.testing.assert_array_equal(p.task.base_metrics[0], p1.task.base_metrics[0])
    assert task.objective.target_label(0) == "3"
    assert task.objective.target_label(2) == "1 after 5,8"


def test_a_stepped_episode_starts_from_its_targets_model(base, pool):
    """A step's edit multiplies into the target's own starting matrix (MaskWorld), so a zero
    action leaves exactly that model."""
    _, starts, task = pool
    env = MaskWorld(task, rank=2)
    params = env.make_params(max_steps_in_episode=3)
    _, state = env.reset_to(2, params)
    _, state, _, _, _ = env.step_env(jax.random.key(0), state, jnp.zeros(env.action_size),
                                     params)
    edited = env.edited_params(state, params)
    np.testing.assert_array_equal(get_leaf(edited, base.edit_paths[0]), starts[2][0])


def test_retain_rows_leave_each_targets_earlier_classes_out(base, pool):
    _, _, task = pool
    arrays = task.split_arrays("train")
    y = np.asarray(arrays["y"])
    for t, gone in enumerate(((), (5,), (5, 8))):
        retain = np.asarray(arrays["retain"][t])
        assert not retain[np.isin(y, gone)].any()
        assert retain[~np.isin(y, (*gone, *task.objective.targets[t]))].all()
        assert arrays["n_retain"][t] == retain.sum()


def test_sequence_pools_refuse_what_means_nothing(base):
    w = (np.asarray(get_leaf(base.params, base.edit_paths[0])),)
    with pytest.raises(ValueError, match="at least two requests"):
        sequence_pool_task(base, [((), 3)], [w])
    with pytest.raises(ValueError, match="twice"):
        sequence_pool_task(base, [((), 3), ((5, 5), 1)], [w, w])
    with pytest.raises(ValueError, match="twice"):
        sequence_pool_task(base, [((), 3), ((1,), 1)], [w, w])
    with pytest.raises(ValueError, match="starts\\[1\\] has leaf shapes"):
        sequence_pool_task(base, [((), 3), ((5,), 1)], [w, (w[0][:3],)])
    with pytest.raises(ValueError, match="already took out of the retain set"):
        UnlearnObjective(pool=((3,), (5,)), pool_forgotten=((), (5,)))
    with pytest.raises(ValueError, match="give one per target"):
        UnlearnObjective(pool=((3,), (5,)), pool_forgotten=((),))


def test_the_fingerprint_tells_starting_models_apart(base, pool):
    requests, starts, task = pool
    other = sequence_pool_task(base, requests, [starts[0], starts[2], starts[1]])
    assert task_fingerprint(task) != task_fingerprint(other)
    # every other task keeps its fingerprint: the new field is not in the objective's repr
    assert "pool_forgotten" not in repr(base.objective)


def test_sequence_orders_are_seeded_distinct_pool_classes():
    orders = sequence_orders((0, 1, 2, 3, 4, 5), 3, seed=0)
    assert orders == sequence_orders((0, 1, 2, 3, 4, 5), 3, seed=0)
    assert orders != sequence_orders((0, 1, 2, 3, 4, 5), 3, seed=1)
    assert len(orders) == 6
    for o in orders:
        assert len(o) == 4 and len(set(o)) == 4 and set(o) <= set(range(6))


@pytest.mark.parametrize("fields, message", [
    ({"sequence_depth": 1}, "needs `amortized=True` with a pool of classes"),
    ({"sequence_depth": 4, "amortized": True, "forget_fraction": 0.2},
     "orders of 5 disjoint sets of 0.2 of the train split leave nothing to retain"),
    ({"sequence_depth": 3, "amortized": True, "forget_classes": (0, 1, 2)},
     "need a pool of at least 4 classes"),
    ({"sequence_depth": 1, "amortized": True, "forget_classes": (0, 1),
      "from_run": "runs/x"}, "drop `task_factory`/`from_run`"),
    ({"sequence_rounds": 2, "amortized": True, "forget_classes": (0, 1)},
     "`sequence_rounds` applies to a policy trained for sequences"),
    ({"sequence_depth": 1, "sequence_rounds": 0, "amortized": True, "forget_classes": (0, 1)},
     "a whole number >= 1, got 0"),
])
def test_a_sequence_depth_that_means_nothing_is_refused(fields, message):
    cfg = make_run_config(**fields)
    with pytest.raises(ValueError, match=message):
        check_sequence_depth(cfg)


def test_the_one_stage_run_path_points_at_the_two_stage_one(tmp_path):
    from maskshift.run import train_and_evaluate

    cfg = make_run_config(amortized=True, forget_classes=(0, 1, 2), sequence_depth=1)
    with pytest.raises(ValueError, match="train_sequence_policy"):
        train_and_evaluate(cfg, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_one_stage_run_path_refuses_rounds_it_would_ignore(tmp_path):
    from maskshift.run import train_and_evaluate

    cfg = make_run_config(sequence_rounds=2)
    with pytest.raises(ValueError, match="`sequence_rounds` applies to a policy trained for"):
        train_and_evaluate(cfg, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.long
def test_a_policy_trained_for_sequences_resumes_and_edits_a_sequence(tmp_path):
    """Two stages into one directory, killed in each and resumed; the policy it saves edits a
    sequence request by request (maskshift.sequence --policy)."""
    from maskshift.run import train_sequence_policy
    from maskshift.run.policy import load_policy
    from maskshift.run.sequence import make_plan, run_sequence

    # flat PPO on the summary observation: the cheapest policy to compile (the stages, the start
    # models and the resume are the same for every policy)
    cfg = make_run_config(amortized=True, forget_classes=(0, 1, 2), sequence_depth=1,
                          episode_length=3, num_envs=16, total_steps=96, updates_per_chunk=1,
                          heads="flat", observation="summary")
    out = tmp_path / "policy"
    quiet = lambda s: None  # noqa: E731
    first = train_sequence_policy(cfg, out, log=quiet, stop_after_chunks=1)
    assert first == {"stopped_at_update": 1, "stage": 1}
    second = train_sequence_policy(cfg, out, log=quiet, stop_after_chunks=1)
    assert second == {"stopped_at_update": 1, "stage": 2}
    res = train_sequence_policy(cfg, out, log=quiet)
    labels = [t["label"] for t in res["targets"]]
    assert labels[:3] == ["0", "1", "2"] and len(labels) == 6
    assert all(" after " in label for label in labels[3:])
    stage_one = (out / "stage-1" / "policy.json").read_text()
    assert load_policy(out).meta["checksum"] not in stage_one  # trained further
    plan = make_plan(make_run_config(), [3, 5], policy=out)
    seq = run_sequence(plan, tmp_path / "seq", log=quiet)
    assert [r["request"] for r in seq["after_each"]] == [3, 5]
    assert set(seq["after_each"][1]["forget_acc_by_request"]) == {"3", "5"}


@pytest.mark.long
def test_a_second_round_starts_from_the_first_rounds_policy(tmp_path):
    """``sequence_rounds=2``: a finished one-round run, copied in as stage 1 and stage 2, is taken
    as it is; stage 3 makes its start models with the stage-2 policy, is killed and resumes."""
    import shutil

    from maskshift.run import train_sequence_policy
    from maskshift.run.policy import load_policy

    cfg = make_run_config(amortized=True, forget_classes=(0, 1, 2), sequence_depth=1,
                          episode_length=3, num_envs=16, total_steps=96, updates_per_chunk=1,
                          heads="flat", observation="summary")
    lines = []
    one = tmp_path / "one"
    train_sequence_policy(cfg, one, log=lambda s: None)
    two = tmp_path / "two"
    shutil.copytree(one / "stage-1", two / "stage-1")
    shutil.copytree(one, two / "stage-2", ignore=shutil.ignore_patterns("stage-1"))
    cfg2 = dataclasses.replace(cfg, sequence_rounds=2)
    stopped = train_sequence_policy(cfg2, two, log=lines.append, stop_after_chunks=1)
    assert stopped == {"stopped_at_update": 1, "stage": 3}
    res = train_sequence_policy(cfg2, two, log=lines.append)
    assert not any(s.startswith(("stage 1:", "stage 2:")) for s in lines)  # both taken as made
    assert sum(s.startswith("stage 3: the stage-2 policy") for s in lines) == 2
    assert len(res["targets"]) == 6
    checksums = {load_policy(d).meta["checksum"] for d in (one, two / "stage-2", two)}
    assert len(checksums) == 2  # stage 2 as copied, stage 3 trained further
    assert load_policy(two).config.sequence_rounds == 2


# --- a pool of example requests in the middle of sequences ---

@pytest.fixture(scope="module")
def example_pool(base):
    """Three example requests: set 0 on the pretrained model, set 1 after set 0 and set 2 after
    sets 0 and 1, the later ones on their own (made up) edited models."""
    w = np.asarray(get_leaf(base.params, base.edit_paths[0]))
    keep = np.random.default_rng(0).random(w.shape) > 0.3
    sets = [tuple(map(int, s)) for s in disjoint_forget_sets(len(base.dataset.train), 0.05, 3,
                                                              seed=5)]
    requests = [((), sets[0]), ((sets[0],), sets[1]), ((sets[0], sets[1]), sets[2])]
    starts = [(w,), (w * keep,), (w * keep * 0.9,)]
    return sets, starts, sequence_examples_pool_task(base, requests, starts)


@pytest.mark.slow
def test_an_example_pool_target_reads_as_its_request_of_a_sequence(base, example_pool):
    """With the pool's held-out levels, target ``t`` is the request ``next_examples_task`` makes
    on the same edited model (its rows renumbered: sums in another order, so to 1e-6)."""
    sets, starts, task = example_pool
    for t in (1, 2):
        edited = set_leaves(base.params, base.edit_paths, [jnp.asarray(starts[t][0])])
        single = next_examples_task(base, edited, sets[t], sets[:t])
        single = dataclasses.replace(single, objective=dataclasses.replace(
            single.objective, levels=task.objective.levels))
        _assert_target_reads_as(task, t, single, MaskWorld,
                                ("retain_acc", "forget_acc", "forget_confidence", "test_acc"),
                                base_atol=1e-6)
    assert task.objective.target_label(2) == f"set 2 ({len(sets[2])} examples) after " \
        f"{len(sets[0]) + len(sets[1])} forgotten"


def test_example_retain_rows_leave_each_targets_earlier_sets_out(example_pool):
    sets, _, task = example_pool
    arrays = task.split_arrays("train")
    n = len(task.dataset.train)
    for t in range(3):
        gone = np.zeros(n, bool)
        gone[[i for s in sets[:t] for i in s]] = True
        retain, forget = np.asarray(arrays["retain"][t]), np.asarray(arrays["forget"][t])
        assert not retain[gone].any() and not retain[forget].any()
        assert retain[~gone & ~forget].all()
        assert np.flatnonzero(forget).tolist() == list(sets[t])


def test_example_sequence_pools_refuse_what_means_nothing(base, example_pool):
    sets, starts, _ = example_pool
    with pytest.raises(ValueError, match="at least two requests"):
        sequence_examples_pool_task(base, [((), sets[0])], starts[:1])
    with pytest.raises(ValueError, match="already took out of the retain set"):
        sequence_examples_pool_task(base, [((), sets[0]), ((sets[0],), sets[0])], starts[:2])


def test_example_orders_are_seeded_disjoint_and_not_a_sequences_sets():
    orders = example_orders(1000, 0.05, 3, 4, seed=0)
    assert orders == example_orders(1000, 0.05, 3, 4, seed=0)
    assert orders != example_orders(1000, 0.05, 3, 4, seed=1)
    assert len(orders) == 4 and len(set(orders)) == 4
    for o in orders:
        assert len(o) == 4 and all(len(s) == 50 for s in o)
        assert len({i for s in o for i in s}) == 200  # disjoint within an order
    # a sequence at the same forget seed draws other sets
    requests = disjoint_forget_sets(1000, 0.05, 4, seed=0)
    assert all(tuple(map(int, requests[0])) != o[0] for o in orders)


@pytest.mark.long
def test_a_policy_trained_for_sequences_of_example_sets_edits_one(tmp_path):
    """Both stages over example sets; the policy edits a sequence of example requests it never
    saw (maskshift.sequence --example-requests N --policy)."""
    from maskshift.run import train_sequence_policy
    from maskshift.run.policy import load_policy
    from maskshift.run.sequence import make_plan, run_sequence

    cfg = make_run_config(amortized=True, forget_fraction=0.05, forget_sets=2, sequence_depth=1,
                          episode_length=3, num_envs=16, total_steps=96, updates_per_chunk=1,
                          heads="flat", observation="summary")
    quiet = lambda s: None  # noqa: E731
    lines = []
    res = train_sequence_policy(cfg, tmp_path / "policy", log=lines.append)
    assert "stage 1: the amortized policy on 2 random sets of 0.05 of the train split" in lines
    labels = [t["label"] for t in res["targets"]]
    assert len(labels) == 4 and [" after " in label for label in labels] == [False] * 2 + [True] * 2
    assert load_policy(tmp_path / "policy").config.sequence_depth == 1
    plan = make_plan(make_run_config(forget_seed=3), policy=tmp_path / "policy", examples=2)
    seq = run_sequence(plan, tmp_path / "seq", log=quiet)
    assert [r["request"] for r in seq["after_each"]] == [1, 2]
    assert seq["examples"]["fraction"] == 0.05


def test_stage_two_draws_the_stage_one_pools_example_sets(base):
    """Stage 2's requests from the pretrained model are exactly the sets stage 1 trained on."""
    from maskshift.data.forget_sets import random_forget_sets
    from maskshift.tasks import example_pool_task

    y = base.dataset.train.y
    for labels in (None, y):
        pool = example_pool_task(base, 0.05, 3, seed=4, stratified=labels is not None).objective
        assert random_forget_sets(len(y), 0.05, 3, 4, labels=labels) == list(pool.pool)
