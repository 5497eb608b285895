"""The throughput benchmark's NumPy reference is the same step, and both benchmark scripts run end
to end in their smallest setting."""

import json
import runpy
import statistics
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskshift.bench import NumpyEditWorld, bench_vmap

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("env_id", ["MaskWorld-v0", "ShiftWorld-v0"])
@pytest.mark.parametrize("task", ["unlearn", "bias"])
def test_the_numpy_step_is_the_jax_step(envs, env_id, task):
    env, p = envs[(env_id, task)]
    ref = NumpyEditWorld(env, p)
    action = np.asarray(jax.random.normal(jax.random.key(3), (env.action_size,)))
    obs0, state0 = env.reset(jax.random.key(0), p)
    np_obs0, (e0, _) = ref.reset()
    np.testing.assert_allclose(np_obs0, obs0, atol=1e-6)
    # the update of the edit and the effective weights
    e1, w1 = ref.update(e0, action)
    obs, state, reward, _, info = env.step_env(jax.random.key(1), state0, jnp.asarray(action), p)
    np.testing.assert_allclose(e1, state.edit[0], rtol=1e-5, atol=1e-6)
    # the objective's metrics on the same rows
    idx = ref.draw(np.random.default_rng(0))
    batch = {k: jnp.asarray(ref.train[k][i]) for k, i in idx.items()}
    params = env.params_for_edit(state.edit, p)
    want = env.task.objective.measure(lambda h: env.task.suffix(params, h), batch)
    np.testing.assert_allclose(ref.metrics(w1, idx), want, rtol=1e-4, atol=1e-5)
    # the observation and the reward from the metrics JAX measured on its own batch
    np.testing.assert_allclose(ref.observe(e1, np.asarray(info["metrics"]), 1), obs, atol=1e-5)
    u, e = env.task.objective.terms(np.asarray(info["metrics"]), np.asarray(p.task.base_metrics[0]))
    assert float(p.lambda_utility) * u + float(p.lambda_edit) * e == pytest.approx(float(reward),
                                                                                  abs=1e-5)


@pytest.mark.long
def test_vmap_mode_reports_compile_memory_and_flops(envs):
    env, p = envs[("ShiftWorld-v0", "bias")]
    r = bench_vmap(env, p, 4, reps=2, steps=3)
    assert r["n"] == 4 and len(r["seconds"]) == 2 and r["compile_s"] > 0
    assert r["steps_per_call"] == 3  # figures per environment-step: 4 envs x 3 steps per call
    assert r["steps_per_s"] == pytest.approx(statistics.median(12 / s for s in r["seconds"]))
    assert r["steps_per_s_min"] <= r["steps_per_s"] <= r["steps_per_s_max"]
    assert r["flops"] > 0 and r["xla_bytes"] > 0 and r["devices"] == 1
    chunked = bench_vmap(env, p, 4, reps=1, chunk=2, steps=1)
    assert chunked["steps_per_s"] > 0 and chunked["chunk"] == 2
    with pytest.raises(ValueError, match="chunk of 3 does not divide 4 environments"):
        bench_vmap(env, p, 4, reps=1, chunk=3)


@pytest.mark.long
def test_throughput_script_smallest_setting_with_the_parts_of_the_step(tmp_path):
    """Every timing mode in one run (one interpreter and one set of compilations for CI)."""
    out = tmp_path / "tp.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"),
                           "--envs", "shift", "--tasks", "bias", "--ns", "1", "4", "--reps", "1",
                           "--modes", "vmap", "loop", "numpy", "chunked", "matmul", "parts",
                           "--chunk", "2", "--steps-per-call", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    r = res["results"]["shift-bias"]
    assert [x["n"] for x in r["vmap"]] == [1, 4] and [x["n"] for x in r["loop"]] == [1, 4]
    assert [x["n"] for x in r["numpy"]] == [1, 4] and [x["n"] for x in r["chunked"]] == [4]
    assert res["steps_per_call"] == 2 and res["chunk"] == 2
    assert all(0 < x["roofline_fraction"] for x in r["vmap"])
    assert set(r["ratios"]["vmap_over_loop"]) == {"1", "4"}
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up at each N" in proc.stdout
    parts = next(p for p in r["parts"] if p["n"] == 4)  # the chunked step exists at N = 4
    assert set(parts["roofline_bound"]) == {"vmap", "chunked"}
    for mode in ("vmap", "chunked"):
        # the parts are nested subsets of the step's work: XLA's FLOP counts say so exactly
        update, observe = parts[mode]["update"], parts[mode]["observe"]
        assert 0 < update["flops"] < observe["flops"] < r["vmap"][1]["flops"]
        assert update["steps_per_s"] > 0 and observe["steps_per_s"] > 0
        assert 0 < parts["roofline_bound"][mode]
    assert "chunked parts: update" in proc.stdout and "roofline bound" in proc.stdout


@pytest.mark.long
def test_throughput_script_times_the_shared_draw_beside_the_per_env_one(tmp_path):
    out = tmp_path / "tp.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"),
                           "--envs", "mask", "--tasks", "unlearn", "--ns", "4", "--reps",
                           "1", "--modes", "vmap", "loop", "--minibatches", "per_env", "shared",
                           "--pool", "1", "2", "--steps-per-call", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"mask-unlearn", "mask-unlearn-pool", "mask-unlearn-shared",
                        "mask-unlearn-shared-pool"}
    assert res["mask-unlearn-shared"]["vmap"][0]["steps_per_s"] > 0
    assert res["mask-unlearn-shared"]["loop"] == []    # one environment: the draws are the same


def test_throughput_times_the_default_policy_of_each_env_and_task():
    from maskshift.bench.ppo import default_policy

    assert default_policy("mask", "unlearn") == "residual"
    assert default_policy("shift", "unlearn") == "residual-step"
    assert default_policy("mask", "bias") == default_policy("shift", "bias") == "residual-step"


@pytest.mark.long
def test_ppo_throughput_script_smallest_setting(tmp_path):
    out = tmp_path / "ppo.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ppo_throughput.py"),
                           "--policies", "default", "--envs", "shift", "--tasks", "bias",
                           "--num-envs", "4", "--chunks",
                           "none", "2", "--minibatches", "shared", "--updates", "1", "--reps",
                           "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    # the default editor of ShiftWorld on bias reads the controller-step observation
    assert [(r["policy"], r["env_chunk"], r["minibatch"]) for r in rows] == [
        ("residual-step", None, "shared"), ("residual-step", 2, "shared")]
    for r in rows:   # one 16-step episode per update: the bias default's episode length
        assert r["episode_length"] == 16 and r["env_steps_per_call"] == 4 * 16
        assert r["compile_s"] > 0
        assert r["env_steps_per_s"] == pytest.approx(64 / r["median_s"])


@pytest.mark.parametrize("env_id", ["MaskWorld-v0", "ShiftWorld-v0"])
def test_partial_step_keeps_the_edit_and_observation_of_the_real_step(envs, env_id):
    from maskshift.bench import PartialStep

    env, p = envs[(env_id, "bias")]
    _, state = env.reset(jax.random.key(0), p)
    action = 0.3 * jax.random.normal(jax.random.key(1), (env.action_size,))
    obs, new, *_ = env.step(jax.random.key(2), state, action, p)
    part_obs, part_new, *_ = PartialStep(env, "observe").step(jax.random.key(2), state, action, p)
    for a, b in zip(new.edit, part_new.edit, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the observation's structure features and time agree; its metrics are the old state's
    k = env.summary_size - len(env.task.objective.metric_names) - 1
    np.testing.assert_allclose(np.asarray(obs[:k]), np.asarray(part_obs[:k]), atol=1e-6)
    assert float(part_obs[env.summary_size - 1]) == float(obs[env.summary_size - 1])


def test_throughput_script_rejects_a_bad_mode(capsys):
    script = runpy.run_path(str(ROOT / "benchmarks" / "throughput.py"))  # not as __main__
    with pytest.raises(SystemExit) as exc:
        script["main"](["--modes", "warp"])
    assert exc.value.code == 2 and "invalid choice: 'warp'" in capsys.readouterr().err


@pytest.mark.long
def test_throughput_sweep_times_a_conv_edit_both_ways():
    from maskshift.bench import run_throughput
    res = run_throughput(envs=("mask",), tasks=("unlearn",), ns=(2,), modes=("vmap",), reps=1,
                         steps=1, edits=(("Conv_1", "Dense_0"),), conv_impls=("lax", "patches"),
                         log=lambda s: None)["results"]
    assert set(res) == {"mask-unlearn-edit=Conv_1+Dense_0-lax",
                        "mask-unlearn-edit=Conv_1+Dense_0-patches"}
    for r in res.values():
        assert r["action_size"] == (144 + 32 + 512 + 64) * 4
        assert r["vmap"][0]["steps_per_s"] > 0 and r["vmap"][0]["compile_s"] > 0


def _field_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_field", ROOT / "benchmarks" / "field.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_field_adds_methods_to_a_class_and_refuses_another_setting(tmp_path):
    """A class's saved comparison keeps its methods when more are asked for at the same setting,
    is reused when it holds them all, and one of other seeds is replaced only with --overwrite."""
    field = _field_script()
    args = field.build_parser().parse_args(
        ["--classes", "7", "--seeds", "0", "1", "--edit", "Conv_1", "--out", str(tmp_path),
         "--methods", "original", "retrain", "MaskWorld-oracle"])
    saved = {"seeds": [0, 1], "task_options": {"edit": ["Conv_1"]}, "rl_total_steps": None,
             "methods": ["original", "retrain", "ShiftWorld-oracle"]}
    assert field.planned_methods(None, args) == args.methods
    assert field.planned_methods(saved, args) == ["original", "retrain", "ShiftWorld-oracle",
                                                  "MaskWorld-oracle"]
    assert field.planned_methods({**saved, "methods": [*saved["methods"], "MaskWorld-oracle"]},
                                 args) is None  # holds them all: reused as it is
    other = {**saved, "seeds": [0, 1, 2]}
    with pytest.raises(ValueError, match="--overwrite"):
        field.planned_methods(other, args)
    (tmp_path / "class7").mkdir()
    (tmp_path / "class7" / "comparison.json").write_text(json.dumps(other))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "field.py"), "--classes",
                           "7", "--seeds", "0", "1", "--out", str(tmp_path), "--methods",
                           "original"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    args.overwrite = True
    assert field.planned_methods(other, args) == args.methods


def test_field_merge_pools_seeds_run_apart_as_if_run_together(tmp_path):
    """Tables of seeds run in separate processes merge into exactly the table the runs pooled
    together give (means, population stds, counts, settings); a file of another setting or a
    seed given twice is refused in one line, exit 2."""
    from maskshift.run.compare import TABLE_KEYS

    field = _field_script()
    rng = np.random.default_rng(0)
    keys = (*TABLE_KEYS["unlearn"], "forget_acc", "retain_acc", "wall_seconds")

    def run(setting=None):
        r = {k: float(rng.uniform(0, 1)) for k in keys}
        return {**r, "setting": setting} if setting else r

    def result(n, salun_runs=True):  # one class's comparison at one seed
        runs = {"original": [run() for _ in range(n)],
                "MaskWorld-oracle": [run() for _ in range(n)]}
        if salun_runs:
            runs["salun"] = [run({"learning_rate": float(rng.choice([1e-3, 3e-3]))})
                             for _ in range(n)]
        return {"runs": runs}

    seed0 = [result(1, salun_runs=False) for _ in range(3)]  # an older table without salun
    seed1 = [result(1) for _ in range(3)]
    seed2 = [result(1) for _ in range(3)]
    methods = ["original", "MaskWorld-oracle", "salun"]
    together = field.pooled(seed0 + seed1 + seed2, methods[:2])
    together["salun"] = field.pooled(seed1 + seed2, methods)["salun"]
    paths = []
    for seed, res in enumerate([seed0, seed1, seed2]):
        ms = [m for m in methods if m in res[0]["runs"]]
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"args": {"dataset": None, "classes": [0, 1, 2],
                                             "seeds": [seed]},
                                    "table": field.pooled(res, ms)}))
        paths.append(str(path))
    table, args = field.merge_files(paths)
    assert args.seeds == [0, 1, 2] and table["salun"]["runs"] == 6
    for m in methods:
        assert table[m]["runs"] == together[m]["runs"]
        assert table[m]["meets_target"] == together[m]["meets_target"]
        assert table[m].get("settings") == together[m].get("settings")
        for k in keys:
            np.testing.assert_allclose(table[m][k]["mean"], together[m][k]["mean"], rtol=1e-12)
            np.testing.assert_allclose(table[m][k]["std"], together[m][k]["std"], rtol=1e-9)
    out = tmp_path / "all.json"
    assert field.main(["--merge", *paths, "--json", str(out)]) == 0
    assert "seeds [0, 1, 2]" in out.with_suffix(".md").read_text()
    # a seed-0 supplement adding salun beside the original it re-ran: the original counts once
    salun0 = [result(1) for _ in range(3)]
    for r0, r in zip(seed0, salun0, strict=True):
        r["runs"]["original"] = r0["runs"]["original"]
    supplement = tmp_path / "s0-salun.json"
    supplement.write_text(json.dumps({"args": {"dataset": None, "classes": [0, 1, 2],
                                               "seeds": [0]},
                                      "table": field.pooled(salun0, ["original", "salun"])}))
    table, _ = field.merge_files([*paths, str(supplement)])
    assert table["original"]["runs"] == 9 and table["salun"]["runs"] == 9
    np.testing.assert_allclose(table["salun"]["ua"]["mean"], field.pooled(
        seed1 + seed2 + salun0, ["salun"])["salun"]["ua"]["mean"], rtol=1e-12)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"args": {"dataset": "fashion_mnist", "classes": [0, 1, 2],
                                          "seeds": [3]}, "table": {}}))
    clash = tmp_path / "s1-again.json"  # seed 1 once more, with other runs
    clash.write_text(json.dumps({"args": {"dataset": None, "classes": [0, 1, 2], "seeds": [1]},
                                 "table": field.pooled([result(1) for _ in range(3)], methods)}))
    for bad in ([paths[0], str(other)], [paths[1], str(clash)]):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "field.py"), "--merge",
                               *bad], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
        assert "merge" in proc.stderr
    # a run flag beside --merge would be silently ignored: refused, nothing written
    ignored = tmp_path / "ignored.json"
    assert field.main(["--merge", *paths, "--seeds", "0", "--json", str(ignored)]) == 2
    assert not ignored.exists()


def test_field_merge_pools_classes_run_apart(tmp_path):
    """Other classes of the same seeds (run in other sessions) merge as the runs pooled together
    do; a merge of merges keeps which (class, seed) runs it holds, so one given twice is refused,
    and a file field.py did not write is named."""
    from maskshift.run.compare import TABLE_KEYS

    field = _field_script()
    rng = np.random.default_rng(1)
    keys = (*TABLE_KEYS["unlearn"], "forget_acc", "retain_acc", "wall_seconds")

    def result():  # one class's comparison at one seed
        return {"runs": {m: [{k: float(rng.uniform(0, 1)) for k in keys}]
                         for m in ("original", "salun")}}

    def save(name, res, classes, seeds):
        path = tmp_path / name
        path.write_text(json.dumps({"args": {"dataset": "fashion_mnist", "classes": classes,
                                             "seeds": seeds},
                                    "table": field.pooled(res, ["original", "salun"])}))
        return str(path)

    c7, c012, c7s1 = [result()], [result() for _ in range(3)], [result()]
    a = save("c7.json", c7, [7], [0])
    b = save("c012.json", c012, [0, 1, 2], [0])
    c = save("c7s1.json", c7s1, [7], [1])
    table, args = field.merge_files([a, b, c])
    together = field.pooled(c7 + c012 + c7s1, ["original", "salun"])
    assert args.classes == [0, 1, 2, 7] and args.seeds == [0, 1]
    assert args.cells == [(0, 0), (1, 0), (2, 0), (7, 0), (7, 1)]
    for m in ("original", "salun"):
        assert table[m]["runs"] == 5
        for k in keys:
            np.testing.assert_allclose(table[m][k]["mean"], together[m][k]["mean"], rtol=1e-12)
            np.testing.assert_allclose(table[m][k]["std"], together[m][k]["std"], rtol=1e-9)
    out = tmp_path / "pooled.json"
    assert field.main(["--merge", a, b, c, "--json", str(out)]) == 0
    assert "5 (class, seed) runs" in out.with_suffix(".md").read_text()
    with pytest.raises(ValueError, match=r"\(7, 0\)"):  # class 7 seed 0 again, inside the merge
        field.merge_files([str(out), save("c7-again.json", [result()], [7], [0])])
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"table": {}}))
    with pytest.raises(ValueError, match="no 'args'"):
        field.merge_files([a, str(stray)])


def test_start_rules_parse_and_refuse_a_malformed_rule():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_start_rules",
                                                  ROOT / "benchmarks" / "start_rules.py")
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    assert rules.parse_rule("whole:svd:3") == (None, "svd", 3.0)
    assert rules.parse_rule("0.25:iteration:0.5") == (0.25, "iteration", 0.5)
    for bad in ("whole:svd", "half:svd:3", "1.5:svd:3", "1.0:qr:3", "1.0:svd:0"):
        with pytest.raises(ValueError, match="rule"):
            rules.parse_rule(bad)


def test_the_sequence_benchmark_names_every_policy_apart():
    """Two policies in one table get two rows (and two run directories): a policy trained for
    sequences is named apart from its stage-1 policy, over classes and over example sets."""
    from maskshift.run import make_run_config

    name = runpy.run_path(str(ROOT / "benchmarks" / "sequence.py"))["policy_name"]
    sets = dict(amortized=True, forget_fraction=0.05)
    assert name(make_run_config(**sets)) == "mask-amortized-16sets0.05"
    assert name(make_run_config(**sets, sequence_depth=4)) == "mask-seq4-16sets0.05"
    pool = dict(amortized=True, forget_classes=(0, 1, 2))
    assert name(make_run_config(**pool)) == "mask-amortized-pool0-1-2"
    assert name(make_run_config(**pool, sequence_depth=2)) == "mask-seq2-pool0-1-2"
    assert name(make_run_config(**pool, sequence_depth=2, sequence_rounds=2)) == \
        "mask-seq2r2-pool0-1-2"
