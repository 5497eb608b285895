"""Shared, session-scoped fixtures: datasets and pretrained models are built once per run."""

import os
import tempfile

import pytest

# Keep the pretraining cache inside the test session, never in the user's home. The model cache
# is shared by the pytest-xdist workers of one run (its entries are locked while one is trained,
# so each model is pretrained once per run: maskshift.models.pretrain); the tests that corrupt
# entries on purpose do it in a private copy. The XLA cache stays one per worker.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")

# XLA:CPU's multi-threaded Eigen pool can lose an execution's completion: a CI run hung for good
# in test_ppo.py's vmap over seeds (the main thread in BlockUntilReady, every Eigen worker idle
# waiting for work; 2026-12-04, jax 0.10.2). Single-threaded Eigen avoids it; set before JAX
# starts, and inherited by the subprocesses the tests start (the multi-device ones add their
# device count to these flags).
NO_EIGEN_THREADS = "--xla_cpu_multi_thread_eigen=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {NO_EIGEN_THREADS}".strip()
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID")


def _cache_dir(kind: str, shared: bool = False) -> str:
    """A fresh temporary directory, or, with ``MASKSHIFT_TEST_CACHE_ROOT`` set (CI sets it for
    its two pytest runs, one after the other), a folder under it: the slow run then loads the
    models and executables the quick run made instead of making them again. ``shared``: one
    folder for every worker of this run (``ROOT/<kind>``, or a temporary one named by the run's
    id), else one per worker (``ROOT/<worker>/<kind>``)."""
    root = os.environ.get("MASKSHIFT_TEST_CACHE_ROOT")
    if not root:
        if shared and _run:
            path = os.path.join(tempfile.gettempdir(), f"maskshift-test-{kind}-{_run}")
            os.makedirs(path, exist_ok=True)
            return path
        return tempfile.mkdtemp(prefix=f"maskshift-test-{kind}-{_worker}-")
    path = os.path.join(root, kind) if shared else os.path.join(root, _worker, kind)
    os.makedirs(path, exist_ok=True)
    return path


os.environ["MASKSHIFT_CACHE_DIR"] = _cache_dir("cache", shared=True)
# A persistent XLA compilation cache per worker (and the subprocesses it starts: CLI runs,
# notebook kernels): many tests compile the same programs (the same env on the same task in
# another fixture or process), and a cached executable is loaded instead of compiled again.
# Not shared between workers: one reading an entry the other is still writing fails (a
# truncated entry). Never the user's cache.
os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir("xla")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"


@pytest.fixture(scope="session")
def digits():
    from maskshift.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def toxic():
    from maskshift.data import load_dataset

    return load_dataset("toxic_templates")


@pytest.fixture(scope="session")
def digits_model(digits):
    from maskshift.models import pretrained

    return pretrained(digits)


@pytest.fixture(scope="session")
def example_pool_policy(tmp_path_factory, digits_model):
    """A tiny policy trained over two random 10% sets of digits' train split (forget seed 0),
    for the tests of what such a policy edits; its directory."""
    from maskshift.cli import train as cli_train

    out = tmp_path_factory.mktemp("example-pool") / "pool"
    assert cli_train.main(["--amortized", "--forget-fraction", "0.1", "--forget-sets", "2",
                           "--heads", "flat", "--num-envs", "8", "--episode-length", "3",
                           "--total-steps", "24", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def toxic_model(toxic):
    from maskshift.models import pretrained

    return pretrained(toxic)


@pytest.fixture(scope="session")
def envs():
    """Every registered env on both built-in tasks, small episodes: {(env_id, task): (env, p)}."""
    from maskshift.envs import REGISTERED_ENVS, make
    from maskshift.tasks import bias_task, unlearning_task

    tasks = {"unlearn": unlearning_task(batch_size=32), "bias": bias_task(batch_size=32)}
    return {(env_id, name): make(env_id, task=task, max_steps_in_episode=3)
            for env_id in REGISTERED_ENVS for name, task in tasks.items()}


@pytest.fixture(scope="session")
def blob_mlp():
    """A user's own small Flax MLP, ``Dense_0 [2, 16] -> Dense_1 [16, 3]``, trained on three
    Gaussian blobs: returns ``(model, params, x [600, 2], y [600])`` (trained on the first 400)."""
    import flax.linen as nn
    import jax
    import numpy as np
    import optax

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(16)(x))  # Dense_0
            return nn.Dense(3)(h)  # Dense_1

    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]], np.float32)
    y = rng.integers(0, 3, 600).astype(np.int32)
    x = (centers[y] + rng.normal(0, 0.5, (600, 2))).astype(np.float32)
    model = MLP()
    params = model.init(jax.random.key(0), x[:1])
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply(p, x[:400]), y[:400]).mean())(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for _ in range(200):
        params, opt_state = step(params, opt_state)
    return model, params, x, y
