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
