"""What defines a run: :class:`RunConfig`, the defaults, and :func:`make_run_config`, the one
builder of a run's config and its editor's (the CLI, ``maskshift.compare`` and every benchmark
call it, so their defaults are the library's by construction)."""

from __future__ import annotations

import dataclasses
import json
import math

from maskshift.agents.apg import APGConfig
from maskshift.agents.networks import default_skip_gain
from maskshift.agents.ppo import PPOConfig
from maskshift.agents.quark import QuarkConfig
from maskshift.controls import GradientConfig, OracleConfig
from maskshift.envs.observe import CONTROLLER_OBSERVATIONS
from maskshift.envs.registry import ENV_ALIASES
from maskshift.models.networks import is_builtin_convolution

# Editors, trained policies first, then the controllers; each with the class of its config.
EDITOR_CONFIGS = {"ppo": PPOConfig, "apg": APGConfig, "quark": QuarkConfig,
                  "gradient": GradientConfig, "oracle": OracleConfig}
ALGOS = tuple(EDITOR_CONFIGS)
# residual PPO's updates on the bias task: fewer fell short of worst-group 0.60 in MaskWorld
# (docs/training.md, "The default PPO policy is the residual one")
BIAS_UPDATES = 640
TRAINED_ALGOS = ("ppo", "apg", "quark")
# the editors that follow the reward's gradient (they refuse a reward that has none)
GRADIENT_ALGOS = ("apg", "gradient", "oracle")
EditorConfig = PPOConfig | APGConfig | QuarkConfig | GradientConfig | OracleConfig
# The episode length of every editor unless the edit's layers (CONVOLUTION_EPISODE_LENGTH) or a
# task's residual PPO (RESIDUAL_TASK_SETTINGS) have their own.
DEFAULT_EPISODE_LENGTH = 8
# Every editor's episode length on a class request that edits convolutions of a built-in CNN
# only (:func:`edits_convolutions`), chosen on val (docs/layers.md, "32 steps for a
# convolution"): in 8 steps no editor reached the digits CNN's Conv_1 target, in 32 the
# controllers and residual PPO do, on the Fashion CNN's Conv_1 too.
CONVOLUTION_EPISODE_LENGTH = 32
# Residual PPO's budget there, per env: ShiftWorld keeps its 10 updates; MaskWorld's 10 met the
# Fashion CNN's Conv_1 target on 0 of 3 seeds (val forget 0.027-0.063 at the 3-point retain
# drop), 20 on 3 of 3 (docs/layers.md, "32 steps for a convolution").
CONVOLUTION_RESIDUAL_UPDATES = {"shift": 10, "mask": 20}
CONVOLUTION_RESIDUAL_TOTAL_STEPS = {env: 64 * CONVOLUTION_EPISODE_LENGTH * updates
                                   for env, updates in CONVOLUTION_RESIDUAL_UPDATES.items()}
# the layers a built-in model's run edits unless told (RunConfig.edit)
DEFAULT_EDIT = ("Dense_0",)
# Residual PPO's settings on a task where they differ from the defaults, chosen on val over
# seeds 0 1 2 in both envs (benchmarks/bias_tuning.py; docs/training.md, "The default PPO policy
# is the residual one"): on bias, 16-step episodes at lr 3e-3 met worst-group 0.60 on val in
# 6 of 6 runs, the 8-step default in 3 of 6 (MaskWorld 0 of 3).
RESIDUAL_TASK_SETTINGS = {"bias": {"episode_length": 16, "learning_rate": 3e-3}}
# The residual policy's observation per (task, env) where it is not DEFAULT_OBSERVATION, each
# chosen on val (docs/layers.md, "What the policy's start needs"): on bias the controller-step
# observation (skip gain 1) in both envs, seeds 0 1 2 (mean val worst group 0.724 / 0.927
# against 0.717 / 0.904, accuracy higher in both); on ShiftWorld unlearning, where its val
# forget accuracy was lower on every layer measured (digits and Fashion-MNIST Dense_0, every
# class; both CNNs' Conv_1), and MaskWorld unlearning keeps the controller observation (Fashion
# Dense_0: 5 of 10 val hits against 9) except through convolutions alone (a third key,
# "conv": :func:`edits_convolutions`): at 32 steps 3 of 3 val hits on the digits CNN's Conv_1
# (the controller observation: 0 of 3 on test), val forget 0.063 against 0.419 on the Fashion
# CNN's (docs/layers.md, "32 steps for a convolution").
RESIDUAL_OBSERVATIONS = {("bias", "mask"): "controller-step", ("bias", "shift"): "controller-step",
                         ("unlearn", "shift"): "controller-step",
                         ("unlearn", "mask", "conv"): "controller-step"}
ENV_NAMES = {full: alias for alias, full in ENV_ALIASES.items()}
# Budgets (env steps) of the default editors, measured to reach the README's targets on the
# embedded data: PPO's is the residual policy's (unit heads over the controller observation).
DEFAULT_TOTAL_STEPS = {"ppo": {"unlearn": 64 * 8 * 10, "bias": 64 * 8 * BIAS_UPDATES,
                               "backdoor": 64 * 8 * 10},
                       "apg": {"unlearn": 64 * 8 * 40, "bias": 64 * 8 * 80,
                               "backdoor": 64 * 8 * 40},
                       # Quark: APG's budgets (not tuned; docs/forget-examples.md compares it
                       # with PPO at equal env steps)
                       "quark": {"unlearn": 64 * 8 * 40, "bias": 64 * 8 * 80,
                                 "backdoor": 64 * 8 * 40}}
# Flat PPO (and unit heads over the plain gradient observation, and an amortized policy, which
# trains over a pool of targets) keep the budget they were measured at before the residual
# policy became the default.
LONG_PPO_TOTAL_STEPS = {"unlearn": 64 * 8 * 160, "bias": 64 * 8 * 640, "backdoor": 64 * 8 * 160}
DEFAULT_LR = {"ppo": PPOConfig.learning_rate, "apg": APGConfig.learning_rate,
              "quark": QuarkConfig.learning_rate}
# the utility drop step selection allows on val (your own objective: the unlearning one's)
DEFAULT_TOLERANCE = {"unlearn": 0.03, "bias": 0.02, "backdoor": 0.02}
# The default policy reads the controller observation with unit heads that start on the gradient
# controller's direction (the residual policy: README, "Quick start").
DEFAULT_OBSERVATION = "controller"
# The fields that only choose the best step of an episode: a finished trained run that differs
# from a config in these alone is re-selected, not retrained (maskshift.run.reselect).
SELECTION_FIELDS = ("select_tolerance", "select_rule")


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite values, or an output directory it must not touch)."""


class OutputDirError(TrainingError):
    """``out`` is not a directory this run may write to (checked before anything runs)."""


def check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ValueError(f"Unknown algo {algo!r}; RunConfig.algo is one of {', '.join(ALGOS)}.")
    return algo


def check_env(env: str) -> str:
    """``env`` (``mask`` or ``shift``), or a one-line error that names the choices."""
    if env not in ENV_ALIASES:
        raise ValueError(f"Unknown env {env!r}; choose 'mask' or 'shift'.")
    return env


def default_observation(algo: str, heads: str | None = None, request: dict | None = None) -> str:
    """What the environment shows by default. ``request``: the run's fields that bear on it
    (``task``, ``env``, ``amortized``, ``forget_fraction``/``forget_indices``, ``forget_reward``;
    a RunConfig's or the CLI's, missing ones at their defaults).

    The summary to a flat PPO policy, to every other editor (APG's and Quark's flat network; the
    controllers read no observation, and the summary costs least) and to PPO under a reward with
    no gradient (:func:`gradient_free_reward`: the controller's direction would then only keep
    utility; measured on random-subset forgetting, docs/forget-examples.md). Else the residual
    policy's: the controller observation, or on a class request or bias edit in a (task, env) of
    :data:`RESIDUAL_OBSERVATIONS` the one chosen there, or in a (task, env, "conv") where the
    request :func:`edits_convolutions` (not for an amortized policy, nor a forget set of
    examples: neither was measured with it)."""
    request = request or {}
    if algo != "ppo" or heads == "flat" or gradient_free_reward(request):
        return "summary"
    if request.get("amortized") or forgets_examples(request):
        return DEFAULT_OBSERVATION
    key = (request.get("task") or "unlearn", _env_alias(request))
    if edits_convolutions(request) and key + ("conv",) in RESIDUAL_OBSERVATIONS:
        return RESIDUAL_OBSERVATIONS[key + ("conv",)]
    return RESIDUAL_OBSERVATIONS.get(key, DEFAULT_OBSERVATION)


def _env_alias(request: dict | None) -> str:
    """The env ``request`` names, as its alias (``mask``/``shift``; MaskWorld when unnamed)."""
    env = (request or {}).get("env") or "mask"
    return ENV_NAMES.get(env, env)


def edits_convolutions(request: dict) -> bool:
    """Whether ``request`` (a RunConfig's or the CLI's fields) asks to forget classes through
    convolutions of a built-in CNN only, with one target: where every editor takes
    :data:`CONVOLUTION_EPISODE_LENGTH` steps. Your own model (``task_factory``), an amortized
    policy, a forget set of examples and an edit with a dense layer keep the defaults (none was
    measured at 32 steps)."""
    task = request.get("task") or "unlearn"
    if task != "unlearn" or request.get("task_factory") or request.get("amortized") \
            or forgets_examples(request):
        return False
    edit = request.get("edit") or DEFAULT_EDIT
    return all(is_builtin_convolution(e) for e in edit)


def _on_convolutions(request: dict | None, task: str, amortized: bool) -> bool:
    """:func:`edits_convolutions` for ``request`` with ``task`` and ``amortized`` as given."""
    return edits_convolutions({**(request or {}), "task": task, "amortized": amortized})


def forgets_examples(fields: dict) -> bool:
    """Whether the run config ``fields`` name a forget set of examples rather than classes."""
    return fields.get("forget_fraction") is not None or fields.get("forget_indices") is not None


def gradient_free_reward(fields: dict) -> bool:
    """Whether the run config ``fields`` name a reward with no gradient (a forget set of
    examples under ``accuracy_gap`` or ``attack``)."""
    return forgets_examples(fields) and \
        (fields.get("forget_reward") or "confidence") != "confidence"


def default_heads(observation: str) -> str:
    """A PPO policy's heads by default: unit heads where the observation has per-unit features,
    else flat heads."""
    return "units" if observation != "summary" else "flat"


def is_residual(algo: str, heads: str, observation: str, amortized: bool = False) -> bool:
    """Whether the editor is the residual PPO policy (unit heads over the controller
    observation, one target)."""
    return (algo == "ppo" and heads == "units" and observation in CONTROLLER_OBSERVATIONS
            and not amortized)


def residual_setting(name: str, algo: str, task: str, *, heads: str | None = None,
                     observation: str | None = None, amortized: bool = False):
    """``task``'s own value of ``name`` in :data:`RESIDUAL_TASK_SETTINGS` where the editor is the
    residual policy (``heads``/``observation`` ``None``: their defaults), else ``None``."""
    observation = observation or default_observation(algo, heads,
                                                     {"task": task, "amortized": amortized})
    heads = heads or default_heads(observation)
    if not is_residual(algo, heads, observation, amortized):
        return None
    return RESIDUAL_TASK_SETTINGS.get(task, {}).get(name)


def default_episode_length(algo: str, task: str, *, heads: str | None = None,
                           observation: str | None = None, amortized: bool = False,
                           request: dict | None = None) -> int:
    """:data:`DEFAULT_EPISODE_LENGTH`; the residual policy's own on ``task``; or
    :data:`CONVOLUTION_EPISODE_LENGTH` for every editor where ``request`` (the run's fields)
    :func:`edits_convolutions`."""
    if _on_convolutions(request, task, amortized):
        return CONVOLUTION_EPISODE_LENGTH
    return residual_setting("episode_length", algo, task, heads=heads, observation=observation,
                            amortized=amortized) or DEFAULT_EPISODE_LENGTH


def default_total_steps(algo: str, task: str, *, heads: str = "flat",
                        observation: str = "summary", amortized: bool = False,
                        request: dict | None = None) -> int:
    """A trained editor's budget: :data:`DEFAULT_TOTAL_STEPS` for APG and for the residual PPO
    policy (unit heads, controller observation, one target; on convolutions, its env's
    :data:`CONVOLUTION_RESIDUAL_TOTAL_STEPS`); :data:`LONG_PPO_TOTAL_STEPS` for every other
    PPO policy."""
    on_convolutions = _on_convolutions(request, task, amortized)  # the task as the run names it
    task = task if task in DEFAULT_TOLERANCE else "unlearn"  # your own objective
    if algo == "ppo" and not is_residual(algo, heads, observation, amortized):
        return LONG_PPO_TOTAL_STEPS[task]
    if algo == "ppo" and on_convolutions:
        return CONVOLUTION_RESIDUAL_TOTAL_STEPS[check_env(_env_alias(request))]
    return DEFAULT_TOTAL_STEPS[algo][task]


def editor_config(algo: str, task: str = "unlearn", *, env: str | None = None,
                  episode_length: int | None = None,
                  amortized: bool = False, observation: str | None = None,
                  total_steps: int | None = None, num_envs: int | None = None,
                  lr: float | None = None, heads: str | None = None,
                  skip_gain: float | None = None, oracle_restarts: int | None = None,
                  oracle_iterations: int | None = None,
                  request: dict | None = None) -> EditorConfig:
    """The config of ``algo``'s editor, every option not given at its default: a trained
    editor's budget is :data:`DEFAULT_TOTAL_STEPS` for ``task`` (at least one update), its
    rollout as long as the episode (:func:`default_episode_length`), PPO's minibatches
    ``gcd(4, num_envs * episode_length)``; by default PPO is the residual policy
    (:func:`default_observation`, :func:`default_heads`), with ``task``'s own settings from
    :data:`RESIDUAL_TASK_SETTINGS`. ``request``: the run's other fields that bear on the
    defaults (``edit``, ``task_factory``, a forget set: :func:`edits_convolutions`)."""
    check_algo(algo)
    request = {**(request or {}), "task": task, "env": env, "amortized": amortized}
    if algo == "gradient":
        return GradientConfig()
    if algo == "oracle":
        return OracleConfig(restarts=oracle_restarts or OracleConfig.restarts,
                            iterations=oracle_iterations or OracleConfig.iterations)
    num_envs = num_envs or PPOConfig.num_envs
    observation = observation or default_observation(algo, heads, request)
    heads = heads or default_heads(observation)
    episode_length = episode_length or default_episode_length(
        algo, task, heads=heads, observation=observation, amortized=amortized, request=request)
    # a budget given explicitly is checked by the editor config (at least one update); the
    # default grows to one update for a large environment count
    total = total_steps or max(default_total_steps(algo, task, heads=heads,
                                                   observation=observation, amortized=amortized,
                                                   request=request),
                               num_envs * episode_length)
    if lr is None:
        lr = residual_setting("learning_rate", algo, task, heads=heads, observation=observation,
                              amortized=amortized) or DEFAULT_LR[algo]
    if algo in ("apg", "quark"):
        return EDITOR_CONFIGS[algo](num_envs=num_envs, num_steps=episode_length,
                                    total_timesteps=total, learning_rate=lr)
    return PPOConfig(num_envs=num_envs, num_steps=episode_length, total_timesteps=total,
                     learning_rate=lr, num_minibatches=math.gcd(4, num_envs * episode_length),
                     heads=heads, skip_gain=skip_gain or default_skip_gain(observation))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; a resumed run must have the same one.

    ``algo`` picks the editor and ``editor`` holds its config (one of
    :data:`EDITOR_CONFIGS`): ``ppo`` (default) and ``apg`` train a policy, ``gradient`` (the
    greedy gradient controller) and ``oracle`` (open-loop trajectory optimisation) need no
    training. ``editor=None`` and ``observation=None`` take the defaults for the rest of the
    config (:func:`editor_config`, :func:`default_observation`).
    """

    env: str = "mask"
    task: str = "unlearn"
    dataset: str | None = None
    data_dir: str | None = None
    seed: int = 0
    forget_classes: tuple[int, ...] = (7,)
    rank: int = 4
    # None: the editor's (default_episode_length: 8, 32 on convolutions, or residual PPO's own
    # on the task)
    episode_length: int | None = None
    lambda_utility: float | None = None
    lambda_edit: float | None = None
    step_size: float | None = None
    eval_batch: int | None = None
    select_tolerance: float | None = None
    updates_per_chunk: int = 20
    algo: str = "ppo"
    editor: EditorConfig | None = None
    # how the best step is chosen on validation (maskshift.tasks.Objective.selection_key);
    # recorded so that a finished run selected by an older rule is not reused as if it were current
    select_rule: str = "forget-confidence-floor"
    # built-in models: the layers to edit; your own model: the task factory ("module:function")
    # and a fingerprint of the Task it gave (a run resumes only onto the same task)
    edit: tuple[str, ...] = DEFAULT_EDIT
    # the built-in model (maskshift.models.MODELS): None = the dataset's default; "transformer"
    # for text (the bias task)
    model: str | None = None
    task_factory: str | None = None
    task_fingerprint: str | None = None
    # what the policy sees: "summary", "gradient", "controller" or "controller-step"
    # (maskshift.envs.observe)
    observation: str | None = None
    # the backdoor task (maskshift.tasks.backdoor_task): the planted trigger and the edit term
    target_class: int = 0
    trigger_size: int = 2
    poison_rate: float = 0.05
    backdoor_reward: str = "true_label"
    # your own objective on the built-in task's model and data ("module:function")
    objective_factory: str | None = None
    # a sequence of edits: the `out` of the finished unlearning run whose edited model this run
    # edits next (maskshift.run.chain; its forgotten classes leave the data)
    from_run: str | None = None
    # amortized editing: each of forget_classes is its own target, one drawn per episode, and the
    # trained policy is evaluated on each (maskshift.tasks.pool_task)
    amortized: bool = False
    # how each step's train minibatch is drawn: "per_env" or "shared" (maskshift.envs.worlds)
    minibatch: str = "per_env"
    # forget train examples instead of classes (maskshift.tasks.forget_examples): a random
    # fraction of the train split drawn with forget_seed (per class with forget_stratified), or
    # the listed train rows; forget_reward: the edit term (confidence, accuracy_gap, attack)
    forget_fraction: float | None = None
    forget_indices: tuple[int, ...] | None = None
    forget_stratified: bool = False
    forget_seed: int = 0
    forget_reward: str = "confidence"
    # amortized over forget sets of examples: this many random sets of forget_fraction, set i
    # drawn with the seed (forget_seed, i); one per episode
    forget_sets: int = 16
    # amortized over classes, trained for sequences: episodes also start from models the policy
    # already edited for 1 to this many earlier requests (maskshift.run.sequence_policy)
    sequence_depth: int = 0
    # trained for sequences: how many times the training on start models runs, each round's
    # start models made by the last round's policy (1: by the amortized policy only)
    sequence_rounds: int = 1

    @property
    def forgets_examples(self) -> bool:
        """Whether the request names train examples rather than classes."""
        return forgets_examples(vars(self))

    def __post_init__(self):
        check_algo(self.algo)
        request = dataclasses.asdict(self)  # the fields the defaults read (edit, forget set, ...)
        if self.observation is None:
            heads = getattr(self.editor, "heads", None)
            object.__setattr__(self, "observation", default_observation(self.algo, heads, request))
        if self.episode_length is None:
            object.__setattr__(self, "episode_length", getattr(self.editor, "num_steps", None) or
                               default_episode_length(
                                   self.algo, self.task, heads=getattr(self.editor, "heads", None),
                                   observation=self.observation, amortized=self.amortized,
                                   request=request))
        if self.editor is None:
            object.__setattr__(self, "editor", editor_config(
                self.algo, self.task, env=self.env,
                episode_length=self.episode_length, amortized=self.amortized,
                observation=self.observation, request=request))
        if not isinstance(self.editor, EDITOR_CONFIGS[self.algo]):
            raise ValueError(f"RunConfig.editor is a {type(self.editor).__name__}; algo "
                             f"{self.algo!r} takes a {EDITOR_CONFIGS[self.algo].__name__}.")

    @property
    def trainer_config(self) -> PPOConfig | APGConfig:
        """The editor's config where it trains a policy (``ValueError`` otherwise)."""
        if self.algo not in TRAINED_ALGOS:
            raise ValueError(f"algo {self.algo!r} trains nothing; it has no trainer config.")
        return self.editor

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: dict) -> RunConfig:
        """The config :meth:`to_json` wrote (``TypeError`` on an unknown field). A config of a
        run made before ``editor`` existed (every editor's config under ``ppo``, ``apg``,
        ``gradient`` and ``oracle``) reads as its own algo's."""
        d = dict(d)
        algo = d.get("algo", "ppo")
        old = {name: d.pop(name) for name in EDITOR_CONFIGS if name in d}
        if "editor" not in d and algo in old:
            d["editor"] = old[algo]
        kw = {}
        for name, value in d.items():
            if name == "editor" and value is not None:
                value = EDITOR_CONFIGS[algo](**value)
            elif isinstance(value, list):
                value = tuple(value)
            kw[name] = value
        return cls(**kw)


def canonical_config(config_json: dict) -> dict:
    """A saved config's JSON as today's :meth:`RunConfig.to_json` writes it (a run made before
    ``editor`` existed compares equal to the same run made now); unreadable: unchanged."""
    try:
        return RunConfig.from_json(config_json).to_json()
    except (TypeError, ValueError, KeyError):
        return config_json


def training_fields(config_json: dict) -> dict:
    """A run config's JSON without :data:`SELECTION_FIELDS` (and the recorded env params): what
    the edit itself depends on."""
    config_json = canonical_config({k: v for k, v in config_json.items() if k != "env_params"})
    return {k: v for k, v in config_json.items() if k not in SELECTION_FIELDS}


def check_sequence_rounds(cfg: RunConfig) -> None:
    """Refuse ``sequence_rounds`` that mean nothing (``ValueError``, naming the fix): below 1,
    or above 1 without ``sequence_depth``."""
    rounds = cfg.sequence_rounds
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`sequence_rounds` is how many times the training on start models "
                         f"runs: a whole number >= 1, got {rounds!r}.")
    if rounds != 1 and not cfg.sequence_depth:
        raise ValueError("`sequence_rounds` applies to a policy trained for sequences: give "
                         "`sequence_depth` too (e.g. 4), or leave the rounds at 1.")


def select_tolerance(cfg: RunConfig) -> float:
    """The utility drop the step selection on val allows: ``cfg.select_tolerance`` if given,
    else the task's default."""
    if cfg.select_tolerance is not None:
        return cfg.select_tolerance
    return DEFAULT_TOLERANCE.get(cfg.task, DEFAULT_TOLERANCE["unlearn"])


def make_run_config(*, algo: str = "ppo", task: str = "unlearn",
                    episode_length: int | None = None,
                    amortized: bool = False, observation: str | None = None,
                    total_steps: int | None = None, num_envs: int | None = None,
                    lr: float | None = None, heads: str | None = None,
                    skip_gain: float | None = None, oracle_restarts: int | None = None,
                    oracle_iterations: int | None = None, forget_classes=(7,), edit=None,
                    updates_per_chunk: int | None = None, minibatch: str | None = None,
                    **fields) -> RunConfig:
    """A :class:`RunConfig` with its editor's config built by :func:`editor_config`: every
    option left ``None`` takes the library's default. ``fields``: any other RunConfig field."""
    request = {**fields, "task": task, "amortized": amortized, "edit": edit}
    observation = observation or default_observation(algo, heads, request)
    # editor_config resolves the default episode length; RunConfig then reads it off the editor
    # (a controller's config holds none: RunConfig resolves it from the same request)
    editor = editor_config(algo, task, env=fields.get("env"), episode_length=episode_length,
                           amortized=amortized, observation=observation, total_steps=total_steps,
                           num_envs=num_envs, lr=lr, heads=heads, skip_gain=skip_gain,
                           oracle_restarts=oracle_restarts, oracle_iterations=oracle_iterations,
                           request=request)
    return RunConfig(algo=algo, task=task, episode_length=episode_length, amortized=amortized,
                     observation=observation, editor=editor,
                     forget_classes=tuple(forget_classes), edit=tuple(edit or RunConfig.edit),
                     updates_per_chunk=updates_per_chunk or RunConfig.updates_per_chunk,
                     minibatch=minibatch or "per_env", **fields)
