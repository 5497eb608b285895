"""What every command-line entry point shares: one-line errors and checked flag types.

Bad input is refused before anything runs or is written, with one line that names the flag and
the values that work, and exit status 2 (argparse's own convention for usage errors).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
import warnings

from maskshift.data import TASK_KINDS, TFDS_DATASETS
from maskshift.data.forget_sets import read_forget_indices
from maskshift.models import MODELS
from maskshift.tasks.forget_examples import FORGET_REWARDS
from maskshift.tasks.objectives import BACKDOOR_EDIT_TERMS

TEXT_MODELS = MODELS["text"]

# the built-in tasks, for every command's --task
TASKS = tuple(TASK_KINDS)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(kind, text: str, what: str, ok) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (kind is float and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, "a whole number >= 1", lambda v: v >= 1)


def nonneg_int(text: str) -> int:
    return _number(int, text, "a whole number >= 0", lambda v: v >= 0)


def seed_int(text: str) -> int:
    """A PRNG seed: ``jax.random.key`` takes 0 .. 2**32 - 1."""
    return _number(int, text, "a whole number from 0 to 4294967295", lambda v: 0 <= v < 2**32)


def positive_float(text: str) -> float:
    return _number(float, text, "a finite number > 0", lambda v: v > 0)


def nonneg_float(text: str) -> float:
    return _number(float, text, "a finite number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    return _number(float, text, "a number from 0 to 1", lambda v: 0 <= v <= 1)


def path(text: str) -> str:
    """A file or directory path: refuses an empty one (it would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


# config fields whose flag has another name
FLAG_NAMES = {"forget_classes": "forget-class", "timeout": "distributed-timeout",
              "total_timesteps": "total-steps", "from_run": "from"}
_FIELD = re.compile(r"`([a-z_]+)(?:=([^`]*))?`")


def flag_of(name: str) -> str:
    """The flag of an argparse destination or a config field: ``env_chunk`` -> ``--env-chunk``."""
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def refuse_unused(args, parser: argparse.ArgumentParser, flags: dict[str, str]) -> None:
    """Refuse flags given explicitly where they have no effect: ``flags`` maps an argparse
    destination (whose default is ``None``) to the reason it does not apply."""
    for dest, why in flags.items():  # a flag this command lacks was not given
        if getattr(args, dest, None) is not None:
            parser.error(f"argument {flag_of(dest)}: {why}; drop it")


def as_flags(message) -> str:
    """A library message as a command-line user reads it. The library names options as fields in
    backticks (`` `overwrite=True` ``, `` `algo='ppo'` ``, `` `forget_classes=(0, 1)` ``); here each
    becomes its flag (``--overwrite``, ``--algo ppo``, ``--forget-class 0 1``)."""
    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        text = flag_of(name)
        if value is None or value == "True":
            return text
        return f"{text} {value.strip(chr(39) + '()[]').replace(',', '')}"

    return _FIELD.sub(flag, str(message))


@contextlib.contextmanager
def one_line_warnings():
    """Inside, a library warning prints as one line on stderr (``warning: ...``), its fields as
    flags; the warning machinery is restored on exit."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {as_flags(message)}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield


def fail(parser: argparse.ArgumentParser, err, status: int = 2):
    """Stop with the error ``err`` on one line (its fields as flags), exit status ``status``."""
    parser.exit(status, f"error: {as_flags(err)}\n")


# the backdoor task's flags (argparse destinations): defaults None, so an unused one is refused
BACKDOOR_FLAGS = ("target_class", "trigger_size", "poison_rate", "backdoor_reward")


def add_backdoor_arguments(parser, reward: bool = True) -> None:
    """The backdoor task's planted trigger and (``reward``) its edit term, the same in every
    command."""
    parser.add_argument("--target-class", type=nonneg_int, default=None,
                        help="backdoor: the class the trigger forces (default 0)")
    parser.add_argument("--trigger-size", type=positive_int, default=None,
                        help="backdoor: side of the square trigger in the bottom-right corner, "
                             "pixels (default 2)")
    parser.add_argument("--poison-rate", type=positive_float, default=None,
                        help="backdoor: share of train images stamped and relabelled to plant "
                             "it, in (0, 1) (default 0.05)")
    if not reward:
        return
    parser.add_argument("--backdoor-reward", default=None, choices=BACKDOOR_EDIT_TERMS,
                        help="backdoor: the edit term, true_label (default: cross-entropy of "
                             "triggered images to their true labels), away (-log(1 - p(target)) "
                             "of them) or success_rate (the attack success rate itself; no "
                             "gradient follows it, PPO only)")


def backdoor_fields(args) -> dict:
    """The RunConfig fields of the backdoor flags given (the others keep their defaults)."""
    return {k: getattr(args, k) for k in BACKDOOR_FLAGS if getattr(args, k, None) is not None}


def open_fraction(text: str) -> float:
    return _number(float, text, "a number strictly between 0 and 1", lambda v: 0 < v < 1)


# the forget-set-of-examples flags (argparse destinations): defaults None, so an unused one is
# refused
FORGET_SET_FLAGS = ("forget_fraction", "forget_indices", "forget_stratified", "forget_seed",
                    "forget_reward", "forget_sets")


def add_forget_set_arguments(parser, amortized: bool = False) -> None:
    """Forget train examples instead of classes (unlearn), the same in every command
    (``amortized``: and the pool size of an amortized policy)."""
    parser.add_argument("--forget-fraction", type=open_fraction, default=None, metavar="F",
                        help="unlearn: forget a random share F of the train split, in (0, 1) "
                             "(e.g. 0.1), instead of classes (docs/forget-examples.md)")
    parser.add_argument("--forget-indices", type=path, default=None, metavar="FILE",
                        help="unlearn: forget the train rows listed in FILE (integers, one per "
                             "line or separated by spaces or commas; # comments)")
    parser.add_argument("--forget-stratified", action="store_const", const=True, default=None,
                        help="with --forget-fraction: the same share of every class")
    parser.add_argument("--forget-seed", type=nonneg_int, default=None,
                        help="with --forget-fraction: the seed of the draw (default 0; the "
                             "same set for every --seed)")
    if amortized:
        parser.add_argument("--forget-sets", type=positive_int, default=None, metavar="N",
                            help="with --amortized --forget-fraction: train over N random "
                                 "forget sets, one per episode (default 16)")
    parser.add_argument("--forget-reward", default=None, choices=FORGET_REWARDS,
                        help="with a forget set of examples: the edit term, confidence "
                             "(default: forget-set true-class confidence to the held-out level; "
                             "differentiable), accuracy_gap (|forget - held-out accuracy|) or "
                             "attack (a confidence-threshold attack's member rate to its "
                             "held-out rate); the last two have no gradient: PPO (default "
                             "policy for them: flat heads, summary observation) or Quark")


def check_forget_set_args(args, parser) -> None:
    """Refuse forget-set flags that mean nothing with the others given (one line, exit 2)."""
    given = [f for f in FORGET_SET_FLAGS if getattr(args, f, None) is not None]
    if not given:
        return
    if args.forget_fraction is not None and args.forget_indices is not None:
        parser.error("argument --forget-indices: give --forget-fraction (a random share) or "
                     "--forget-indices (your list), not both")
    if args.forget_fraction is None and args.forget_indices is None:
        parser.error(f"argument {flag_of(given[0])}: applies to a forget set of examples; add "
                     "--forget-fraction F or --forget-indices FILE")
    if args.forget_indices is not None:
        for f in ("forget_stratified", "forget_seed", "forget_sets"):
            if getattr(args, f, None) is not None:
                parser.error(f"argument {flag_of(f)}: applies to --forget-fraction only (your "
                             "file names the examples); drop it")
    if getattr(args, "task", "unlearn") != "unlearn":
        parser.error(f"argument {flag_of(given[0])}: applies to --task unlearn only; drop it")
    if getattr(args, "forget_class", None):
        parser.error("argument --forget-class: a forget set of examples replaces the forget "
                     "classes; give one or the other")


def forget_set_fields(args) -> dict:
    """The RunConfig fields of the forget-set flags given; the index file is read here
    (``ValueError`` naming a bad entry)."""
    fields = {k: getattr(args, k) for k in FORGET_SET_FLAGS if getattr(args, k, None) is not None}
    if "forget_indices" in fields:
        fields["forget_indices"] = tuple(int(i) for i in read_forget_indices(args.forget_indices))
    return fields


def add_model_arguments(parser) -> None:
    """``--edit`` and ``--model``: which built-in model and which of its layers are edited."""
    parser.add_argument("--edit", nargs="+", default=None, metavar="LAYER",
                        help="layer names or leaf paths to edit (default Dense_0; e.g. Conv_1, "
                             "Block_1/Attn/query; LEAF:k views a kernel's first k axes as rows, "
                             "docs/layers.md)")
    parser.add_argument("--model", default=None, choices=TEXT_MODELS,
                        help="the built-in text model, --task bias: bag (default: the "
                             "embedding-bag classifier) or transformer (2 blocks of 2 heads)")


def model_fields(args) -> dict:
    """The RunConfig fields of ``--edit`` and ``--model`` where given."""
    return {**({"edit": tuple(args.edit)} if args.edit else {}),
            **({"model": args.model} if args.model else {})}


def add_dataset_arguments(parser) -> None:
    """``--dataset`` and ``--data-dir``, the same in every command."""
    parser.add_argument("--dataset", default=None,
                        help="default: digits (unlearn, backdoor), toxic_templates (bias); TFDS: "
                             + ", ".join(TFDS_DATASETS))
    parser.add_argument("--data-dir", type=path, default=None,
                        help="where TFDS datasets are prepared (passed to tfds.data_source; "
                             "default $TFDS_DATA_DIR or ~/tensorflow_datasets), or a directory "
                             "of MNIST-style IDX files for mnist/fashion_mnist (fashion_mnist "
                             "without one: /usr/share/datasets/fashion-mnist, from apt-get "
                             "install dataset-fashion-mnist)")
