"""``python -m maskshift.train``: edit a model with RL (or a gradient control) and report it on
held-out data. This module parses and prints; :func:`maskshift.run.train_and_evaluate` does the
work.

Examples::

    python -m maskshift.train --env mask --task unlearn --forget-class 7 --out runs/mask-unlearn
    python -m maskshift.train --env shift --task bias --seed 1
    python -m maskshift.train --env mask --algo gradient     # the greedy gradient controller
    python -m maskshift.train --env shift --algo apg         # analytic policy gradients
    python -m maskshift.train --algo quark --forget-fraction 0.1 --forget-reward accuracy_gap

``--algo ppo`` (default), ``apg`` and ``quark`` train a policy in jitted chunks of updates
(progress is printed after each) and checkpoint it with Orbax after every chunk (a killed run
restarted with the same command resumes); ``gradient`` and ``oracle`` need no training. Every
editor's episode is rolled out, its best step picked on the validation split, and ``--out``
receives ``results.json``, ``edited/``, the plots and (trained editors) ``ckpt/``.
"""

from __future__ import annotations

import sys

import jax

from maskshift.agents.networks import HEADS, STEP_SKIP_GAIN
from maskshift.agents.ppo import PPOConfig
from maskshift.checkpoint import CheckpointError
from maskshift.cli.args import (
    BACKDOOR_FLAGS,
    FORGET_SET_FLAGS,
    TASKS,
    Parser,
    add_backdoor_arguments,
    add_dataset_arguments,
    add_forget_set_arguments,
    add_model_arguments,
    backdoor_fields,
    check_forget_set_args,
    fail,
    forget_set_fields,
    fraction,
    nonneg_float,
    nonneg_int,
    one_line_warnings,
    path,
    positive_float,
    positive_int,
    refuse_unused,
    seed_int,
)
from maskshift.cli.launch import DISTRIBUTED_FLAGS, add_distributed_arguments, join
from maskshift.controls import OracleConfig
from maskshift.data import check_task
from maskshift.envs import MINIBATCHES, OBSERVATIONS
from maskshift.run import (
    ALGOS,
    DEFAULT_LR,
    DEFAULT_TOTAL_STEPS,
    OutputDirError,
    RunConfig,
    TrainingError,
    make_run_config,
    train_and_evaluate,
    train_sequence_policy,
)
from maskshift.run.config import (
    CONVOLUTION_RESIDUAL_TOTAL_STEPS,
    LONG_PPO_TOTAL_STEPS,
    TRAINED_ALGOS,
    check_algo,
    default_heads,
    default_observation,
)

TRAINED_ONLY = "applies to --algo ppo, apg or quark only (gradient and oracle train nothing)"


def build_parser() -> Parser:
    p = Parser(prog="python -m maskshift.train",
               description="Edit a pretrained model with RL (PPO, APG) or a gradient control in "
                           "the same action space.")
    _add_what_to_edit(p)
    add_editor_options(p)
    add_reward_and_selection(p)
    _add_output_and_devices(p)
    return p


def _add_what_to_edit(p: Parser) -> None:
    """The model, task, data, editor and seed."""
    p.add_argument("--env", default="mask", choices=("mask", "shift"),
                   help="mask (MaskWorld) or shift (ShiftWorld)")
    p.add_argument("--task", default="unlearn", choices=TASKS,
                   help="unlearn (default), bias or backdoor (remove a planted trigger)")
    p.add_argument("--algo", default="ppo", choices=ALGOS,
                   help="the editor (default ppo; gradient and oracle need no training)")
    add_dataset_arguments(p)
    add_model_arguments(p)
    p.add_argument("--task-factory", default=None, metavar="MODULE:FUNCTION",
                   help="your own task: a function with no arguments returning a maskshift.Task "
                        "(e.g. task_from_model(...)); replaces --task, --dataset and --edit")
    p.add_argument("--objective-factory", default=None, metavar="MODULE:FUNCTION",
                   help="your own objective: a function with no arguments returning a "
                        "maskshift.tasks.Objective, edited on --task's model and data "
                        "(docs/objectives.md)")
    add_backdoor_arguments(p)
    add_forget_set_arguments(p, amortized=True)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--forget-class", type=nonneg_int, nargs="+", default=None,
                   help="class(es) to forget, unlearn only (default 7); with --amortized, the "
                        "pool of classes to train over")
    p.add_argument("--from", dest="from_run", type=path, default=None, metavar="DIR",
                   help="edit the edited model of the finished unlearning run in DIR (the next "
                        "request of a sequence): every class it has forgotten so far leaves the "
                        "data (docs/sequences.md)")
    p.add_argument("--amortized", action="store_true",
                   help="train one policy over the --forget-class pool, one class drawn per "
                        "episode, then edit each (ppo, unlearn; its unit heads serve classes "
                        "never seen)")
    p.add_argument("--sequence-depth", type=nonneg_int, default=None, metavar="K",
                   help="with --amortized: train the policy for sequences of requests (classes, "
                        "or example sets with --forget-fraction), its episodes also starting "
                        "from models it already edited for 1 to K earlier requests (two stages, "
                        "twice the budget; docs/sequences.md)")
    p.add_argument("--sequence-rounds", type=positive_int, default=None, metavar="R",
                   help="with --sequence-depth: train on start models R times, each round's "
                        "made by the last round's policy (default 1: by the amortized policy; "
                        "each round adds the budget once more)")


def add_editor_options(p: Parser) -> None:
    """The trained editors' budget and policy, and the action's shape."""
    p.add_argument("--total-steps", type=positive_int, default=None,
                   help=f"env steps to train, ppo/apg/quark (default: residual ppo "
                        f"{DEFAULT_TOTAL_STEPS['ppo']} (on convolutions, updates of 32-step "
                        f"episodes: {CONVOLUTION_RESIDUAL_TOTAL_STEPS}), apg and quark "
                        f"{DEFAULT_TOTAL_STEPS['apg']}, "
                        f"any other ppo policy and --amortized {LONG_PPO_TOTAL_STEPS})")
    p.add_argument("--num-envs", type=positive_int, default=None,
                   help="parallel environments, ppo/apg/quark (default 64)")
    p.add_argument("--rank", type=positive_int, default=4)
    p.add_argument("--episode-length", type=positive_int, default=None,
                   help="steps per episode (default 8; 32 for every editor when --edit names "
                        "convolutions of the built-in CNN only, 16 for the default PPO policy "
                        "on --task bias, each chosen on val: docs/layers.md, docs/training.md)")
    p.add_argument("--observation", default=None, choices=OBSERVATIONS,
                   help="what the policy sees, ppo: controller (per-unit factors of the reward "
                        "terms' gradients and of the gradient controller's direction; size grows "
                        "with m + n; the default for MaskWorld forgetting a class, backdoor, "
                        "--amortized and a set of examples), controller-step (the controller's "
                        "own step on the whole minibatch instead of its direction; the default "
                        "for ShiftWorld forgetting a class, MaskWorld forgetting one through "
                        "convolutions alone, and --task bias, chosen on val: "
                        "docs/layers.md), gradient (without the controller's) or summary (fixed "
                        "size; the default with --heads flat)")
    p.add_argument("--heads", default=None, choices=HEADS,
                   help="policy action heads, ppo: units (default: one network shared over "
                        "units, starting on the controller's direction or step; needs a per-unit "
                        "observation) or flat (one vector for all of U and V: flat PPO)")
    p.add_argument("--skip-gain", type=positive_float, default=None,
                   help=f"--heads units: the initial gain of the skip path on the factors the "
                        f"heads start on (default {PPOConfig.skip_gain}; {STEP_SKIP_GAIN} with "
                        f"--observation controller-step)")
    p.add_argument("--minibatch", default=None, choices=MINIBATCHES,
                   help="each step's train minibatch, ppo: per_env (default; every environment "
                        "draws its own) or shared (one draw per step for all environments, "
                        "class-stratified with --amortized: one matrix product per step)")


def add_reward_and_selection(p: Parser) -> None:
    """Reward coefficients, step size, minibatch, learning rate, the oracle and selection."""
    p.add_argument("--lambda-utility", type=nonneg_float, default=None,
                   help="utility coefficient (default: 10 unlearn and backdoor, 2 bias)")
    p.add_argument("--lambda-edit", type=nonneg_float, default=None,
                   help="edit coefficient (default: 1 unlearn and backdoor, 4 bias)")
    p.add_argument("--step-size", type=positive_float, default=None,
                   help="largest change per step (default 0.25 mask, 0.1 shift)")
    p.add_argument("--eval-batch", type=positive_int, default=None,
                   help="train examples per set per step (default 64 unlearn and backdoor, 128 "
                        "bias)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate, ppo/apg/quark (default: {DEFAULT_LR})")
    p.add_argument("--oracle-restarts", type=positive_int, default=None,
                   help=f"oracle: random starts optimised side by side "
                        f"(default {OracleConfig.restarts})")
    p.add_argument("--oracle-iterations", type=positive_int, default=None,
                   help=f"oracle: optimiser steps, one episode per restart each "
                        f"(default {OracleConfig.iterations})")
    p.add_argument("--select-tolerance", type=fraction, default=None,
                   help="utility drop allowed when choosing the best step on validation "
                        "(default 0.03 unlearn, 0.02 bias and backdoor)")
    p.add_argument("--updates-per-chunk", type=positive_int, default=None,
                   help="updates per compiled chunk (progress and checkpoint after each; "
                        "default 20), ppo/apg/quark")


def _add_output_and_devices(p: Parser) -> None:
    """Where the run goes and what it runs on."""
    p.add_argument("--out", type=path, default=None,
                   help="output directory (default runs/<env>-<task>-s<seed>, "
                        "runs/<env>-<task>-<algo>-s<seed> for another algo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--devices", type=positive_int, default=None,
                   help="devices to split the environments over (default: all visible)")
    p.add_argument("--env-chunk", type=positive_int, default=None,
                   help="step each device's environments in groups of this many: faster on "
                        "CPU, e.g. 8 (default: one vmap over all of them, best on GPU/TPU); ppo")
    add_distributed_arguments(p)




def check_combinations(args, parser: Parser) -> None:
    """Refuse flags that have no effect with the others given (one line, exit 2)."""
    unused = {}
    if args.task != "unlearn":
        unused["forget_class"] = "applies to --task unlearn only"
    if args.task != "backdoor":
        unused.update({k: "applies to --task backdoor only" for k in BACKDOOR_FLAGS})
    if args.task != "bias":
        unused["model"] = "applies to --task bias only (the image tasks have one built-in model)"
    if args.algo not in TRAINED_ALGOS:
        unused.update(total_steps=TRAINED_ONLY, num_envs=TRAINED_ONLY, lr=TRAINED_ONLY,
                      updates_per_chunk=TRAINED_ONLY)
    if args.algo != "oracle":
        unused.update(oracle_restarts="applies to --algo oracle only",
                      oracle_iterations="applies to --algo oracle only")
    if args.algo != "ppo":
        unused["env_chunk"] = "applies to --algo ppo only"
        unused["heads"] = "applies to --algo ppo only"
        unused["skip_gain"] = "applies to --algo ppo --heads units only"
        unused["observation"] = "applies to --algo ppo only (the policy reads it)"
        unused["minibatch"] = "applies to --algo ppo only (the controllers run one environment)"
    if args.from_run is not None and args.task != "unlearn":
        unused["from_run"] = "continues an unlearning edit: applies to --task unlearn only"
    if args.from_run is not None:
        unused["sequence_depth"] = ("trains from the pretrained model; a policy trained for "
                                    "sequences edits --from runs itself (maskshift.edit --policy)")
    if args.task_factory is not None:
        own = "your --task-factory builds the task (its model, data and edited layers)"
        unused.update(dataset=own, data_dir=own, edit=own, model=own, objective_factory=own,
                      from_run=own, sequence_depth=own)
        if not args.amortized:
            unused["forget_class"] = own
    if not args.distributed:
        unused.update({k: "applies to --distributed only" for k in DISTRIBUTED_FLAGS})
    if args.task_factory is not None:
        unused.update({k: own for k in FORGET_SET_FLAGS})
    if args.from_run is not None or args.objective_factory is not None:
        why = "a forget set of examples does not combine with --from or --objective-factory yet"
        unused.update({k: why for k in ("forget_fraction", "forget_indices")})
    if args.amortized:
        unused["forget_indices"] = ("--amortized trains over random forget sets: give "
                                    "--forget-fraction (edit your list zero-shot with "
                                    "maskshift.edit --forget-indices)")
    else:
        unused["forget_sets"] = "applies to --amortized --forget-fraction only"
        unused["sequence_depth"] = ("applies to --amortized (over a pool of classes or of "
                                    "example sets) only")
    if not args.sequence_depth:
        unused["sequence_rounds"] = "applies to --sequence-depth only"
    refuse_unused(args, parser, unused)
    check_forget_set_args(args, parser)
    if args.amortized:
        check_amortized_args(args, parser)
    if args.heads == "units" and observation_of(args) == "summary":
        parser.error("argument --heads: units heads read per-unit features; add --observation "
                     "gradient (or controller)")
    if args.skip_gain is not None and heads_of(args) != "units":
        parser.error("argument --skip-gain: applies to --heads units only; drop it")
    if args.forget_class and len(set(args.forget_class)) != len(args.forget_class):
        twice = next(c for c in args.forget_class if args.forget_class.count(c) > 1)
        parser.error(f"argument --forget-class: {twice} is listed twice; list each class once")
    if args.lambda_utility == 0 and args.lambda_edit == 0:
        parser.error("argument --lambda-edit: with --lambda-utility 0 too the reward is always 0; "
                     "give one of them a value > 0")


def observation_of(args) -> str:
    """The observation a run uses: ``--observation``, else the library's default."""
    return args.observation or default_observation(args.algo, args.heads, vars(args))


def heads_of(args) -> str:
    """The policy's heads: ``--heads``, else the library's default."""
    return args.heads or default_heads(observation_of(args))


def check_amortized_args(args, parser: Parser) -> None:
    if args.task != "unlearn" or args.algo != "ppo":
        parser.error(f"argument --amortized: trains one unlearning policy over a pool of "
                     f"classes; it needs --task unlearn --algo ppo (got --task {args.task} "
                     f"--algo {args.algo})")
    if getattr(args, "forget_fraction", None) is None and len(set(args.forget_class or ())) < 2:
        parser.error("argument --amortized: give a pool of at least two classes with "
                     "--forget-class (e.g. --forget-class 0 1 2 3 4), or drop --amortized")
    # --sequence-depth against the pool: maskshift.run.sequence_policy.check_sequence_depth


def config_from_args(args) -> RunConfig:
    """The run the flags describe, built by :func:`maskshift.run.make_run_config` (every flag not
    given takes the library's default)."""
    return make_run_config(
        env=args.env, task=check_task(args.task), algo=check_algo(args.algo),
        dataset=args.dataset, data_dir=args.data_dir, seed=args.seed,
        forget_classes=tuple(args.forget_class or (7,)), rank=args.rank,
        episode_length=args.episode_length, lambda_utility=args.lambda_utility,
        lambda_edit=args.lambda_edit, step_size=args.step_size, eval_batch=args.eval_batch,
        select_tolerance=args.select_tolerance, updates_per_chunk=args.updates_per_chunk,
        edit=args.edit, model=args.model, task_factory=args.task_factory,
        observation=args.observation,
        objective_factory=args.objective_factory, **backdoor_fields(args),
        **forget_set_fields(args),
        amortized=args.amortized, sequence_depth=args.sequence_depth or 0,
        sequence_rounds=args.sequence_rounds or 1,
        from_run=args.from_run, minibatch=args.minibatch,
        total_steps=args.total_steps,
        num_envs=args.num_envs, lr=args.lr, heads=args.heads, skip_gain=args.skip_gain,
        oracle_restarts=args.oracle_restarts, oracle_iterations=args.oracle_iterations)


def default_out(args) -> str:
    if args.from_run:  # the next request of a sequence: beside the run it starts from
        return (f"{args.from_run.rstrip('/')}-then"
                + "-".join(map(str, args.forget_class or (7,))))
    algo = "" if args.algo == "ppo" else f"-{args.algo}"
    task = ("custom" if args.task_factory else args.task) + ("-own" if args.objective_factory
                                                            else "") \
        + ("-amortized" if args.amortized else "") \
        + (f"-seq{args.sequence_depth}" if args.sequence_depth else "") \
        + (f"r{args.sequence_rounds}" if (args.sequence_rounds or 1) > 1 else "") \
        + ("-examples" if args.forget_fraction or args.forget_indices else "")
    return f"runs/{args.env}-{task}{algo}-s{args.seed}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_combinations(args, parser)
    out = args.out or default_out(args)
    if args.distributed and not jax.distributed.is_initialized():
        join(args, parser)  # the entry module joins first; a call of main() joins here
    try:
        cfg = config_from_args(args)
        with one_line_warnings():
            run = train_sequence_policy if cfg.sequence_depth else train_and_evaluate
            run(cfg, out, overwrite=args.overwrite, devices=args.devices,
                env_chunk=args.env_chunk, log=lambda s: print(s, flush=True))
    except (ValueError, OutputDirError, CheckpointError) as err:
        fail(parser, err, 2)
    except TrainingError as err:  # a run that failed while running (non-finite values)
        fail(parser, err, 3)
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume from {out}/ckpt",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
