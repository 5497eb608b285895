"""A plain NumPy implementation of the editing step, environment by environment: the ``numpy``
mode of the throughput benchmark, and a reference the JAX step is tested against."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from maskshift.envs import EditWorld, EnvParams
from maskshift.envs.observe import pool_matrix
from maskshift.tasks import BiasObjective, UnlearnObjective, get_leaf


class NumpyEditWorld:
    """The same step as :class:`~maskshift.envs.MaskWorld` / :class:`~maskshift.envs.ShiftWorld`
    in plain NumPy, one environment at a time.

    Supports the built-in objectives and a suffix that is a chain of ``Dense`` layers (ReLU
    between them) starting at the one edited matrix, which is what the built-in tasks edit. The
    chain is checked against the JAX suffix when it is built.
    """

    def __init__(self, env: EditWorld, env_params: EnvParams):
        if len(env.paths) != 1:
            raise ValueError("The NumPy reference step supports one edited matrix.")
        path = env.paths[0]
        layer = path[-2]
        if not (layer.startswith("Dense_") and path[-1] == "kernel"):
            raise ValueError(f"The NumPy reference step needs an edited Dense kernel, not "
                             f"{'/'.join(path)}.")
        self.env, self.kind = env, env.kind
        p = env_params
        self.lu, self.le = float(p.lambda_utility), float(p.lambda_edit)
        self.step_size, self.mask_max = float(p.step_size), float(p.mask_max)
        self.shift_cap, self.T = float(p.shift_cap), int(p.max_steps_in_episode)
        self.w0 = np.asarray(p.task.originals[0], np.float32)
        self.norm0 = float(np.sqrt(np.sum(self.w0 * self.w0)))
        self.rms0 = self.norm0 / math.sqrt(self.w0.size)
        self.obj = env.task.objective
        # the first target's whole train split, in the minibatches' layout
        self.train = self.obj.target_sets(jax.tree.map(np.asarray, p.task.train), 0)
        self.base = np.asarray(p.task.base_metrics[0])
        if not isinstance(self.obj, UnlearnObjective | BiasObjective):
            raise ValueError("The NumPy reference step supports the built-in objectives only.")
        params = jax.tree.map(np.asarray, env.task.params)
        scope = path[:-2]
        start = int(layer.split("_")[1])
        self.bias0 = get_leaf(params, (*scope, layer, "bias"))
        self.rest = []
        k = start + 1
        while True:
            try:
                self.rest.append((get_leaf(params, (*scope, f"Dense_{k}", "kernel")),
                                  get_leaf(params, (*scope, f"Dense_{k}", "bias"))))
            except KeyError:
                break
            k += 1
        h = next(v for v in self.train.values() if v.ndim == 2)[:8]
        want = np.asarray(env.task.suffix(env.task.params, jnp.asarray(h)))
        if not np.allclose(self._logits(h, self.w0), want, atol=1e-4):
            raise ValueError("The model's suffix above the edited layer is not a chain of Dense "
                             "layers; the NumPy reference step cannot reproduce it.")

    def _logits(self, h, w):
        h = h @ w + self.bias0
        for kernel, bias in self.rest:
            h = np.maximum(h, 0.0) @ kernel + bias
        return h

    def reset(self):
        e = np.ones_like(self.w0) if self.kind == "mask" else np.zeros_like(self.w0)
        return self.observe(e, self.base, 0), (e, 0)

    def draw(self, rng) -> dict:
        """Row indices of a fresh train minibatch, per array of the objective."""
        obj, a = self.obj, self.train
        if isinstance(obj, UnlearnObjective):
            ir = rng.integers(0, len(a["y_retain"]), obj.batch_size)
            i_f = rng.integers(0, len(a["y_forget"]), obj.batch_size)
            return {"h_retain": ir, "y_retain": ir, "h_forget": i_f, "y_forget": i_f}
        i = rng.integers(0, len(a["y"]), obj.batch_size)
        return {"h": i, "h_cf": i, "y": i}

    def metrics(self, w, idx: dict) -> np.ndarray:
        """The objective's metrics of weights ``w`` on the rows ``idx``."""
        b = {k: self.train[k][i] for k, i in idx.items()}
        if isinstance(self.obj, UnlearnObjective):
            lr, yr = self._logits(b["h_retain"], w), b["y_retain"]
            lf, yf = self._logits(b["h_forget"], w), b["y_forget"]
            return np.array([_ce(lr, yr).mean(), np.minimum(_ce(lf, yf), self.obj.ce_cap).mean(),
                             (lr.argmax(-1) == yr).mean(), (lf.argmax(-1) == yf).mean()],
                            np.float32)
        lg, lc, y = self._logits(b["h"], w), self._logits(b["h_cf"], w), b["y"]
        pg, pc = _softmax(lg), _softmax(lc)
        return np.array([pg[np.arange(len(y)), y].mean(), np.abs(pg[:, 1] - pc[:, 1]).mean(),
                         (lg.argmax(-1) == y).mean(),
                         (lg.argmax(-1) != lc.argmax(-1)).mean()], np.float32)

    def observe(self, e, metrics, t):
        dev = e - 1.0 if self.kind == "mask" else e / max(self.rms0, 1e-30)
        a = np.abs(dev)
        bins = self.env.obs_bins
        m, n = a.shape
        feats = np.concatenate([[dev.mean(), a.mean(), a.max()], a.mean(1) @ pool_matrix(m, bins),
                                a.mean(0) @ pool_matrix(n, bins)])
        return np.concatenate([np.tanh(feats), np.tanh(metrics), [t / self.T]]).astype(np.float32)

    def update(self, e, action):
        """The new edit and effective weights after ``action``."""
        m, n = self.w0.shape
        r = self.env.rank
        u, v = action[: m * r].reshape(m, r), action[m * r :].reshape(n, r)
        d = np.tanh(u @ v.T / math.sqrt(r))
        if self.kind == "mask":
            e = np.clip(e + self.step_size * d, 0.0, self.mask_max)
            w = self.w0 * e
        else:
            e = e + self.step_size * self.rms0 * d
            norm, cap = float(np.sqrt(np.sum(e * e))), self.shift_cap * self.norm0
            if norm > cap:
                e = e * (cap / norm)
            w = self.w0 + e
        return e, w

    def step(self, rng, state, action):
        """``(obs, state, reward, done)``; the episode auto-resets after ``T`` steps, as in
        gymnax."""
        e, t = state
        e, w = self.update(e, action)
        metrics = self.metrics(w, self.draw(rng))
        utility, edit = self.obj.terms(metrics, self.base)
        reward = self.lu * utility + self.le * edit
        t += 1
        if t >= self.T:
            obs, state = self.reset()
            return obs, state, reward, True
        return self.observe(e, metrics, t), (e, t), reward, False


def _softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _ce(logits, y):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y]
