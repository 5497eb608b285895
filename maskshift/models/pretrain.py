"""Pretraining the target models, and the Orbax cache that makes it a one-time cost.

The cache lives under ``$MASKSHIFT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/maskshift`` or
``~/.cache/maskshift``), one folder per entry, keyed by a hash of the model config, the exact data
(a fingerprint of every array), the training config and the seed. A corrupt or incompatible entry is
detected (metadata, tree structure, shapes, dtypes, checksum, finiteness) and rebuilt with a
warning; it is never used silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from maskshift._io import (
    atomic_write_json,
    replace_dir,
    restore_pytree,
    save_pytree,
    tree_checksum,
)
from maskshift._types import Params, PRNGKey
from maskshift.data import Dataset
from maskshift.hosts import is_primary
from maskshift.models.networks import (
    DigitsCNN,
    ImageCNN,
    StagedModule,
    TextClassifier,
    TransformerClassifier,
)

CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Supervised pretraining hyperparameters."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4


# Image models sized per input: (conv features, hidden units, training config).
IMAGE_SPECS = {
    (8, 8, 1): None,  # the embedded digits: DigitsCNN
    (28, 28, 1): ((16, 32), 128, TrainConfig(epochs=10, batch_size=128, learning_rate=2e-3)),
    (32, 32, 3): ((32, 64, 128), 128, TrainConfig(epochs=12, batch_size=128, learning_rate=2e-3)),
}


# The built-in models a dataset kind offers; the first is its default.
MODELS = {"image": ("cnn",), "text": ("bag", "transformer")}


def check_model(name: str | None, kind: str) -> str:
    """``name`` (``None``: the default) if the built-in models for ``kind`` data include it;
    else ``ValueError`` naming the ones that do."""
    known = MODELS.get(kind, ())
    if name is None:
        return known[0] if known else "own"
    if name not in known:
        raise ValueError(f"No built-in {name!r} model for {kind} data; choose one of "
                         f"{', '.join(known) or 'none (bring your own with task_from_model)'}.")
    return name


def default_model(dataset: Dataset, name: str | None = None) -> tuple[StagedModule, TrainConfig]:
    """The built-in target model ``name`` (:data:`MODELS`; ``None``: the default) and its
    training config for a dataset: the digits CNN for 8x8 digits, an :class:`ImageCNN` sized for
    28x28 (MNIST, Fashion-MNIST) or 32x32x3 (CIFAR-10) images; for text the embedding-bag
    classifier (``"bag"``) or a small transformer (``"transformer"``: 2 blocks of 2 heads,
    width 32)."""
    name = check_model(name, dataset.kind)
    if name == "transformer":
        model = TransformerClassifier(vocab_size=len(dataset.vocab),
                                      max_len=int(dataset.train.x.shape[-1]),
                                      num_classes=dataset.num_classes)
        if dataset.name == "civil_comments":
            return model, TrainConfig(epochs=3, batch_size=256, learning_rate=1e-3)
        return model, TrainConfig(epochs=20, batch_size=128, learning_rate=1e-3)
    if dataset.kind == "image":
        shape = dataset.input_shape
        if shape not in IMAGE_SPECS:
            raise ValueError(f"No built-in image model for inputs of shape {shape}; known: "
                             f"{list(IMAGE_SPECS)}. Bring your own with task_from_model.")
        spec = IMAGE_SPECS[shape]
        if spec is None:
            return DigitsCNN(num_classes=dataset.num_classes), TrainConfig()
        features, hidden, config = spec
        return ImageCNN(num_classes=dataset.num_classes, features=features, hidden=hidden), config
    if dataset.kind == "text":
        model = TextClassifier(vocab_size=len(dataset.vocab), num_classes=dataset.num_classes)
        if dataset.name == "civil_comments":  # ~270k comments: a few passes suffice
            return model, TrainConfig(epochs=3, batch_size=256, learning_rate=3e-3)
        return model, TrainConfig(epochs=20, batch_size=128, learning_rate=3e-3)
    raise ValueError(f"No default model for dataset kind {dataset.kind!r}.")


def init_params(model: nn.Module, dataset: Dataset, key: PRNGKey) -> Params:
    return model.init(key, jnp.asarray(dataset.train.x[:1]))


def fit(params: Params, loss_fn, arrays: tuple, key: PRNGKey, *, epochs: int, batch_size: int,
        learning_rate: float, weight_decay: float = 0.0,
        gradient_transform: optax.GradientTransformation | None = None) -> Params:
    """Minimise ``loss_fn(params, *minibatch)`` with AdamW over shuffled minibatches of
    ``arrays`` (a tuple of arrays sharing their first axis). Pure up to the returned params.
    ``gradient_transform`` runs on the gradients before AdamW (a saliency mask, an ℓ1 term).

    A host loop over one jitted optimizer step. On XLA:CPU a convolution inside a ``lax.scan``
    (a while loop) runs about 10x slower than outside one, and unrolling an epoch costs ~10 s of
    compile; a jitted step with donated buffers trains the digits CNN in seconds instead.
    Pretraining and the fine-tuning baselines share this loop.
    """
    arrays = tuple(jnp.asarray(a) for a in arrays)
    n = arrays[0].shape[0]
    batch_size = min(batch_size, n)
    steps = n // batch_size
    if steps == 0:
        raise ValueError("fit() needs at least one example.")
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    if gradient_transform is not None:
        tx = optax.chain(gradient_transform, tx)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(carry, arrays, batches, i):  # batches: [steps, batch_size] indices
        params, opt_state = carry
        idx = batches[i]
        grads = jax.grad(loss_fn)(params, *(a[idx] for a in arrays))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def epoch_batches(key):
        perm = jax.random.permutation(key, n)[: steps * batch_size]
        return perm.reshape(steps, batch_size)

    carry = (jax.tree.map(jnp.array, params), tx.init(params))
    for epoch_key in jax.random.split(key, epochs):
        batches = epoch_batches(epoch_key)
        for i in range(steps):
            carry = step(carry, arrays, batches, i)
    return carry[0]


def cross_entropy_loss(apply_fn):
    """``(params, x, y) -> mean softmax cross-entropy`` of ``apply_fn``."""
    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, x), y).mean()

    return loss


def train_classifier(
    model: nn.Module, dataset: Dataset, key: PRNGKey, config: TrainConfig = TrainConfig()
) -> Params:
    """Train ``model`` from scratch on ``dataset.train`` with AdamW and shuffled minibatches."""
    if len(dataset.train) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(dataset.train)} "
                         "training examples.")
    init_key, key = jax.random.split(key)
    params = init_params(model, dataset, init_key)
    return fit(params, cross_entropy_loss(model.apply), (dataset.train.x, dataset.train.y), key,
               epochs=config.epochs, batch_size=config.batch_size,
               learning_rate=config.learning_rate, weight_decay=config.weight_decay)


def cache_dir() -> Path:
    if os.environ.get("MASKSHIFT_CACHE_DIR"):
        return Path(os.environ["MASKSHIFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "maskshift"


def cache_key(model: nn.Module, dataset: Dataset, config: TrainConfig, seed: int) -> str:
    desc = json.dumps(
        {"format": CACHE_FORMAT, "model": repr(model), "data": dataset.fingerprint(),
         "train": dataclasses.asdict(config), "seed": seed},
        sort_keys=True,
    )
    return hashlib.sha256(desc.encode()).hexdigest()[:20]


def _cache_entry(dataset: Dataset, seed: int, model=None, config=None, name=None):
    default, default_config = default_model(dataset, name)
    model = model or default
    config = config or default_config
    key = cache_key(model, dataset, config, seed)
    return model, config, key, cache_dir() / "models" / f"{dataset.name}-{key}"


def is_cached(dataset: Dataset, seed: int = 0, *, model: StagedModule | None = None,
              config: TrainConfig | None = None) -> bool:
    """Whether :func:`pretrained` would find a cache entry for these arguments (it still checks
    the entry when it loads it)."""
    return _cache_entry(dataset, seed, model, config)[3].exists()


def model_shapes(dataset: Dataset, name: str | None = None) -> tuple[StagedModule, Params]:
    """The built-in model :func:`pretrained` trains for ``dataset`` (``name``: which one) and
    its params' shapes (``jax.ShapeDtypeStruct`` leaves), without training or loading anything:
    what an edit spec is checked against before a model is pretrained."""
    model = default_model(dataset, name)[0]
    return model, jax.eval_shape(lambda: init_params(model, dataset, jax.random.key(0)))


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pretrained target model: the module, its params, and where they came from."""

    model: StagedModule
    params: Params
    cache_path: Path | None
    from_cache: bool
    seconds: float


def _load_entry(entry: Path, key: str, abstract: Params) -> Params:
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
        raise ValueError(f"metadata mismatch (format {meta.get('format')}, key {meta.get('key')})")
    params = restore_pytree(entry / "params", abstract)
    if tree_checksum(params) != meta.get("checksum"):
        raise ValueError("checksum mismatch")
    if not all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params)):
        raise ValueError("non-finite weights")
    return params


def pretrained(
    dataset: Dataset,
    seed: int = 0,
    *,
    model: StagedModule | None = None,
    config: TrainConfig | None = None,
    use_cache: bool = True,
    name: str | None = None,
) -> Pretrained:
    """The pretrained target model for ``dataset``: loaded from the cache, or trained and cached.

    Args:
      dataset: the data to train on (its ``train`` split).
      seed: seeds initialisation and minibatch order.
      model, config: override the built-in model and its training config.
      use_cache: ``False`` trains afresh and writes nothing.
      name: which built-in model (:data:`MODELS`; ``None``: the dataset's default).
    """
    model, config, key, entry = _cache_entry(dataset, seed, model, config, name)
    if not use_cache:
        return _train_and_store(dataset, seed, model, config, key, None)
    with _entry_lock(entry):  # another process training this entry: wait, then load its result
        return _load_or_train(dataset, seed, model, config, key, entry)


def _load_or_train(dataset, seed, model, config, key, entry: Path) -> Pretrained:
    abstract = jax.eval_shape(lambda: init_params(model, dataset, jax.random.key(0)))
    start = time.perf_counter()
    if entry.exists():
        try:
            params = _load_entry(entry, key, abstract)
            return Pretrained(model, params, entry, True, time.perf_counter() - start)
        except Exception as err:  # corrupt or incompatible: say so, then rebuild
            warnings.warn(
                f"maskshift: pretrained-model cache entry {entry} is corrupt or incompatible "
                f"({type(err).__name__}: {str(err)[:200]}); retraining and replacing it.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _train_and_store(dataset, seed, model, config, key, entry)


def _train_and_store(dataset, seed, model, config, key, entry: Path | None) -> Pretrained:
    """Train the model; with an ``entry``, store it there (atomically, process 0 only)."""
    start = time.perf_counter()
    params = train_classifier(model, dataset, jax.random.key(seed), config)
    params = jax.tree.map(lambda p: np.asarray(p), params)
    if entry is not None and is_primary():  # several processes: process 0 writes (maskshift.hosts)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
        try:
            save_pytree(tmp / "params", params)
            atomic_write_json(tmp / "meta.json", {
                "format": CACHE_FORMAT, "key": key, "checksum": tree_checksum(params),
                "model": repr(model), "dataset": dataset.name, "seed": seed,
                "train": dataclasses.asdict(config)})
            replace_dir(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    params = jax.tree.map(jnp.asarray, params)
    return Pretrained(model, params, entry, False, time.perf_counter() - start)


@contextlib.contextmanager
def _entry_lock(entry: Path):
    """Hold an exclusive lock on a cache entry across processes (pytest workers, parallel
    benchmark runs), so the first trains it and the others wait and load it instead of training it
    again. Where no lock can be taken (no POSIX ``fcntl``, a read-only cache folder), each process
    goes on unlocked; the atomic write keeps the entry whole either way."""
    try:
        import fcntl

        entry.parent.mkdir(parents=True, exist_ok=True)
        handle = open(entry.parent / f".{entry.name}.lock", "a")  # noqa: SIM115 (held below)
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
