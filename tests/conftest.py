"""Shared, session-scoped fixtures: datasets and pretrained models are built once per run."""

import os
import tempfile

import pytest

# Keep the pretraining cache inside the test session, never in the user's home.
os.environ.setdefault("MASKSHIFT_CACHE_DIR", tempfile.mkdtemp(prefix="maskshift-test-cache-"))


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
