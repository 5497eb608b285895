"""The target networks: a small CNN for images, an embedding-bag classifier and a small
transformer for text.

Both are *staged*: ``model.apply(params, x, start=i, stop=j)`` runs stages ``i..j-1`` only. An
environment that edits a layer in stage ``k`` runs stages ``0..k-1`` once on its evaluation data,
caches the activations, and per step runs only ``k..`` (see DESIGN.md, "Speed").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

# The built-in CNNs (DigitsCNN, ImageCNN) name their convolutions Conv_0, Conv_1 (, Conv_2); an edit
# spec naming one (a layer, module or leaf path, with or without a ``:k`` split) edits a
# convolution kernel. The text models have no layer of that name.
_BUILTIN_CONVOLUTION = re.compile(r"(params/)?Conv_[0-9]+(/kernel)?(:[0-9]+)?")


def is_builtin_convolution(spec: str | Sequence[str]) -> bool:
    """Whether the edit spec ``spec`` (``"Conv_1"``, ``"params/Conv_1/kernel"``,
    ``"Conv_1/kernel:2"`` or a path tuple) names a convolution of a built-in CNN."""
    text = spec if isinstance(spec, str) else "/".join(spec)
    return _BUILTIN_CONVOLUTION.fullmatch(text) is not None


class StagedModule(nn.Module):
    """A module whose forward pass is a fixed sequence of stages.

    Subclasses define ``stages()`` returning a list of callables ``h -> h`` and ``STAGE_OF``, the
    stage index that owns each top-level layer name.
    """

    STAGE_OF = {}

    def stages(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x, start: int = 0, stop: int | None = None):
        stages = self.stages()
        for stage in stages[start : len(stages) if stop is None else stop]:
            x = stage(x)
        return x

    @property
    def num_stages(self) -> int:
        return max(self.STAGE_OF.values()) + 1


class DigitsCNN(StagedModule):
    """Conv(16) -> Conv(32) -> 2x2 average pool -> Dense(hidden) -> Dense(classes).

    On 8x8 inputs the pooled features are ``[4, 4, 32]`` = 512, so ``Dense_0`` is ``[512, hidden]``.
    """

    num_classes: int = 10
    features: Sequence[int] = (16, 32)
    hidden: int = 64

    STAGE_OF = {"Conv_0": 0, "Conv_1": 1, "Dense_0": 2, "Dense_1": 3}

    def setup(self):
        self.Conv_0 = nn.Conv(self.features[0], (3, 3))
        self.Conv_1 = nn.Conv(self.features[1], (3, 3))
        self.Dense_0 = nn.Dense(self.hidden)
        self.Dense_1 = nn.Dense(self.num_classes)

    def stages(self):
        def pool_flat(h):
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
            return h.reshape(h.shape[:-3] + (-1,))

        return [
            lambda h: nn.relu(self.Conv_0(h)),
            lambda h: pool_flat(nn.relu(self.Conv_1(h))),
            lambda h: nn.relu(self.Dense_0(h)),
            self.Dense_1,
        ]


class ImageCNN(StagedModule):
    """Conv -> 2x2 average pool, two or three times, then Dense(hidden) -> Dense(classes).

    Sized per dataset by :func:`maskshift.models.default_model`: on 28x28 MNIST-like images
    ``features=(16, 32)`` gives ``Dense_0 [1568, hidden]``; on 32x32x3 CIFAR-10
    ``features=(32, 64, 128)`` gives ``Dense_0 [2048, hidden]``.
    """

    num_classes: int = 10
    features: Sequence[int] = (16, 32)
    hidden: int = 128

    @property
    def STAGE_OF(self):  # noqa: N802  (the StagedModule interface)
        k = len(self.features)
        return {**{f"Conv_{i}": i for i in range(k)}, "Dense_0": k, "Dense_1": k + 1}

    def setup(self):
        if len(self.features) not in (2, 3):
            raise ValueError(f"ImageCNN takes 2 or 3 conv layers, got {len(self.features)}.")
        self.Conv_0 = nn.Conv(self.features[0], (3, 3))
        self.Conv_1 = nn.Conv(self.features[1], (3, 3))
        if len(self.features) == 3:
            self.Conv_2 = nn.Conv(self.features[2], (3, 3))
        self.Dense_0 = nn.Dense(self.hidden)
        self.Dense_1 = nn.Dense(self.num_classes)

    def stages(self):
        def conv_pool(conv, last):
            def stage(h):
                h = nn.avg_pool(nn.relu(conv(h)), (2, 2), strides=(2, 2))
                return h.reshape(h.shape[:-3] + (-1,)) if last else h
            return stage

        convs = [self.Conv_0, self.Conv_1] + ([self.Conv_2] if len(self.features) == 3 else [])
        return [conv_pool(c, i == len(convs) - 1) for i, c in enumerate(convs)] + [
            lambda h: nn.relu(self.Dense_0(h)), self.Dense_1]


class TextClassifier(StagedModule):
    """Embedding bag (mean over non-padding tokens) -> Dense(hidden) -> Dense(classes)."""

    vocab_size: int
    embed_dim: int = 32
    hidden: int = 64
    num_classes: int = 2

    STAGE_OF = {"Embed_0": 0, "Dense_0": 1, "Dense_1": 2}

    def setup(self):
        self.Embed_0 = nn.Embed(self.vocab_size, self.embed_dim)
        self.Dense_0 = nn.Dense(self.hidden)
        self.Dense_1 = nn.Dense(self.num_classes)

    def stages(self):
        def bag(tokens):
            mask = (tokens > 0).astype(jnp.float32)[..., None]
            emb = self.Embed_0(tokens) * mask
            return emb.sum(-2) / jnp.maximum(mask.sum(-2), 1.0)

        return [bag, lambda h: nn.relu(self.Dense_0(h)), self.Dense_1]


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``.

    Its input and output carry the token mask as a last channel (``[..., L, d + 1]``), so a block
    is a stage of its own: the cache below an edited block holds the mask with the activations.
    Editable kernels: ``Attn/query``, ``Attn/key``, ``Attn/value`` (``[d, heads, head_dim]``,
    viewed as ``[d, heads * head_dim]``), ``Attn/out`` (``[heads, head_dim, d]``, viewed as
    ``[heads * head_dim, d]``), ``Mlp_0`` (``[d, mlp]``) and ``Mlp_1`` (``[mlp, d]``).
    """

    heads: int
    mlp: int

    @nn.compact
    def __call__(self, h):
        x, mask = h[..., :-1], h[..., -1:]
        keep = mask[..., 0] > 0
        attn_mask = nn.make_attention_mask(keep, keep)
        y = nn.LayerNorm(name="LayerNorm_0")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="Attn")(
            y, y, mask=attn_mask)
        y = nn.LayerNorm(name="LayerNorm_1")(x)
        y = nn.Dense(x.shape[-1], name="Mlp_1")(nn.gelu(nn.Dense(self.mlp, name="Mlp_0")(y)))
        return jnp.concatenate([(x + y) * mask, mask], -1)


class TransformerClassifier(StagedModule):
    """Token + position embeddings -> ``layers`` transformer blocks -> mean over non-padding
    tokens -> Dense(hidden) -> Dense(classes): the text model with attention to edit.

    Stages: the embeddings, each block, the pooling, ``Dense_0``, ``Dense_1``; like the
    embedding-bag classifier, ``Dense_0`` reads the pooled representation (the bias baselines'
    erasers act there)."""

    vocab_size: int
    max_len: int
    dim: int = 32
    heads: int = 2
    layers: int = 2
    mlp: int = 64
    hidden: int = 64
    num_classes: int = 2

    @property
    def STAGE_OF(self):  # noqa: N802  (the StagedModule interface)
        blocks = {f"Block_{i}": i + 1 for i in range(self.layers)}
        # stage layers + 1 pools the tokens (no params), so Dense_0's stage reads the pooled vector
        return {"Embed_0": 0, "Pos_0": 0, **blocks, "Dense_0": self.layers + 2,
                "Dense_1": self.layers + 3}

    def setup(self):
        self.Embed_0 = nn.Embed(self.vocab_size, self.dim)
        self.Pos_0 = nn.Embed(self.max_len, self.dim)
        for i in range(self.layers):
            setattr(self, f"Block_{i}", TransformerBlock(self.heads, self.mlp))
        self.Dense_0 = nn.Dense(self.hidden)
        self.Dense_1 = nn.Dense(self.num_classes)

    def stages(self):
        def embed(tokens):
            mask = (tokens > 0).astype(jnp.float32)[..., None]
            x = self.Embed_0(tokens) + self.Pos_0(jnp.arange(tokens.shape[-1]))
            return jnp.concatenate([x * mask, mask], -1)

        def pool(h):
            x, mask = h[..., :-1], h[..., -1:]
            return (x * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)

        blocks = [getattr(self, f"Block_{i}") for i in range(self.layers)]
        return [embed, *blocks, pool, lambda h: nn.relu(self.Dense_0(h)), self.Dense_1]
