"""Shared type aliases, in one place (as optax's ``base`` module does)."""

from typing import Any

import jax

PRNGKey = jax.Array
Params = Any  # a Flax parameter pytree: nested dicts of arrays
Array = jax.Array
