"""What defines a run: :class:`RunConfig`, its defaults, and the environment it builds."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from maskshift._io import tree_checksum
from maskshift.apg import APGConfig
from maskshift.control import GradientConfig
from maskshift.data import load_dataset, resolve_dataset
from maskshift.envs import ENV_ALIASES, make
from maskshift.oracle import OracleConfig
from maskshift.ppo import PPOConfig
from maskshift.tasks import Task, bias_task, pool_task, unlearning_task

# Editors, in the order the CLI lists them: trained policies first, then the controllers.
ALGOS = ("ppo", "apg", "gradient", "oracle")
TRAINED_ALGOS = ("ppo", "apg")
# Budgets that reach the README's targets on the embedded data (measured, see README).
DEFAULT_TOTAL_STEPS = {"ppo": {"unlearn": 64 * 8 * 160, "bias": 64 * 8 * 640},
                       "apg": {"unlearn": 64 * 8 * 40, "bias": 64 * 8 * 80}}
DEFAULT_LR = {"ppo": PPOConfig.learning_rate, "apg": APGConfig.learning_rate}
DEFAULT_TOLERANCE = {"unlearn": 0.03, "bias": 0.02}
# The fields that only choose the best step of an episode: a finished trained run that differs
# from a config in these alone is re-selected, not retrained (maskshift.run.reselect).
SELECTION_FIELDS = ("select_tolerance", "select_rule")


def training_fields(config_json: dict) -> dict:
    """A run config's JSON without :data:`SELECTION_FIELDS` (and the recorded env params): what
    the edit itself depends on."""
    return {k: v for k, v in config_json.items() if k not in (*SELECTION_FIELDS, "env_params")}


def select_tolerance(cfg: RunConfig) -> float:
    """The utility drop the step selection on val allows: ``cfg.select_tolerance`` if given,
    else the task's default."""
    if cfg.select_tolerance is not None:
        return cfg.select_tolerance
    return DEFAULT_TOLERANCE[cfg.task]


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite values, or an output directory it must not touch)."""


class OutputDirError(TrainingError):
    """``out`` is not a directory this run may write to (checked before anything runs)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; a resumed run must have the same one.

    ``algo`` picks the editor: ``ppo`` (default) or ``apg`` train a policy (their configs are
    ``ppo``/``apg``); ``gradient`` (the greedy gradient controller) and ``oracle`` (open-loop
    trajectory optimisation) need no training (``gradient``/``oracle``).
    """

    env: str = "mask"
    task: str = "unlearn"
    dataset: str | None = None
    data_dir: str | None = None
    seed: int = 0
    forget_classes: tuple[int, ...] = (7,)
    rank: int = 4
    episode_length: int = 8
    lambda_utility: float | None = None
    lambda_edit: float | None = None
    step_size: float | None = None
    eval_batch: int | None = None
    select_tolerance: float | None = None
    updates_per_chunk: int = 20
    ppo: PPOConfig = PPOConfig()
    algo: str = "ppo"
    apg: APGConfig = APGConfig()
    gradient: GradientConfig = GradientConfig()
    oracle: OracleConfig = OracleConfig()
    # how the best step is chosen on validation (maskshift.rollout.selection_key); recorded so
    # that a finished run selected by an older rule is not reused as if it were current
    select_rule: str = "forget-confidence-floor"
    # built-in models: the layers to edit; your own model: the task factory ("module:function")
    # and a fingerprint of the Task it gave (a run resumes only onto the same task)
    edit: tuple[str, ...] = ("Dense_0",)
    task_factory: str | None = None
    task_fingerprint: str | None = None
    # what the policy sees: "summary" (fixed size) or "gradient" (adds per-unit gradient factors;
    # see maskshift.envs.worlds)
    observation: str = "summary"
    # amortized editing: each of forget_classes is its own target, one drawn per episode, and the
    # trained policy is evaluated on each (maskshift.tasks.pool_task)
    amortized: bool = False
    # how each step's train minibatch is drawn: "per_env" or "shared" (one per step for every
    # environment; see maskshift.envs.worlds)
    minibatch: str = "per_env"

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: dict) -> RunConfig:
        """The config :meth:`to_json` wrote (``TypeError`` on an unknown field)."""
        nested = {"ppo": PPOConfig, "apg": APGConfig, "gradient": GradientConfig,
                  "oracle": OracleConfig}
        kw = {}
        for name, value in d.items():
            if name in nested:
                value = nested[name](**value)
            elif isinstance(value, list):
                value = tuple(value)
            kw[name] = value
        return cls(**kw)

    @property
    def trainer_config(self) -> PPOConfig | APGConfig:
        return {"ppo": self.ppo, "apg": self.apg}[self.algo]


def check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ValueError(f"Unknown algo {algo!r}; choose one of {', '.join(ALGOS)} (--algo).")
    return algo


def check_amortized(cfg: RunConfig) -> None:
    """Refuse ``amortized`` where it means nothing (``ValueError``, naming the fix)."""
    if not cfg.amortized:
        return
    if cfg.task != "unlearn":
        raise ValueError(f"--amortized trains over a pool of forget classes: it needs --task "
                         f"unlearn, not {cfg.task!r}.")
    if cfg.algo != "ppo":
        raise ValueError(f"--amortized trains one policy for many edits: it needs --algo ppo, "
                         f"not {cfg.algo!r} (a controller edits one class per run).")


def load_task_factory(spec: str):
    """``"package.module:function"`` -> the function (a clear error for a wrong spec)."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--task-factory {spec!r} must look like package.module:function.")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--task-factory {spec!r} cannot be loaded ({type(err).__name__}: "
                         f"{err}); check the module is importable and defines {name}.") from None
    if not callable(fn):
        raise ValueError(f"--task-factory {spec!r} is not a function.")
    return fn


def task_fingerprint(task: Task) -> str:
    """A checksum of what defines a task: its name, objective, edited paths, params and data."""
    d = task.dataset
    splits = [(s.x, s.y) for s in (d.train, d.val, d.test)]
    head = repr((task.name, task.objective, task.edit_paths)).encode()
    return hashlib.sha256(head + tree_checksum((task.params, splits)).encode()).hexdigest()[:16]


def builtin_task(cfg: RunConfig) -> Task:
    data = load_dataset(resolve_dataset(cfg.task, cfg.dataset), data_dir=cfg.data_dir)
    if cfg.task == "unlearn":
        return unlearning_task(cfg.forget_classes, dataset=data, edit=cfg.edit,
                               batch_size=cfg.eval_batch or 64, amortized=cfg.amortized)
    return bias_task(dataset=data, edit=cfg.edit, batch_size=cfg.eval_batch or 128)


def resolve_task(cfg: RunConfig, task: Task | None = None) -> tuple[RunConfig, Task]:
    """The task a run edits and the config that records it: ``task`` (your own), else the one
    ``cfg.task_factory`` builds, else the built-in ``cfg.task`` on ``cfg.dataset``."""
    if task is None and cfg.task_factory is not None:
        task = load_task_factory(cfg.task_factory)()
        if not isinstance(task, Task):
            raise ValueError(f"--task-factory {cfg.task_factory!r} returned "
                             f"{type(task).__name__}, not a maskshift.Task.")
    check_amortized(cfg)
    if task is None:
        return cfg, builtin_task(cfg)
    if cfg.amortized and task.objective.num_targets == 1:
        task = pool_task(task, cfg.forget_classes)
    if task.objective.num_targets > 1:
        cfg = dataclasses.replace(cfg, amortized=True,
                                  forget_classes=task.objective.forget_classes)
    if cfg.eval_batch is not None:
        task = dataclasses.replace(task, objective=dataclasses.replace(
            task.objective, batch_size=cfg.eval_batch))
    return dataclasses.replace(cfg, task=task.objective.name, dataset=task.dataset.name,
                               task_fingerprint=task_fingerprint(task)), task


def build_env(cfg: RunConfig, task: Task | None = None):
    """The environment and ``EnvParams`` a run edits in (validates env, task, dataset, classes,
    rank). ``task``: your own :class:`~maskshift.tasks.Task` instead of the built-in one."""
    if cfg.env not in ENV_ALIASES:
        raise ValueError(f"Unknown env {cfg.env!r}; choose 'mask' or 'shift'.")
    if task is None:
        _, task = resolve_task(cfg)
    overrides = {"max_steps_in_episode": cfg.episode_length}
    if cfg.step_size is not None:
        overrides["step_size"] = cfg.step_size
    if cfg.lambda_utility is not None:
        overrides["lambda_utility"] = cfg.lambda_utility
    if cfg.lambda_edit is not None:
        overrides["lambda_edit"] = cfg.lambda_edit
    return make(ENV_ALIASES[cfg.env], task=task, rank=cfg.rank, observation=cfg.observation,
                minibatch=cfg.minibatch, **overrides)
