"""Runs: one path from a :class:`RunConfig` to an edit, its selection on val, its test report and
the files every editor writes.

- :mod:`~maskshift.run.config`: :class:`RunConfig`, the defaults, :func:`make_run_config` (the
  one builder of an editor's config) and the environment a config builds;
- :mod:`~maskshift.run.pipeline`: :func:`train_and_evaluate`, :func:`reselect`,
  :func:`reuse_or_run`;
- :mod:`~maskshift.run.editors`: every editor behind one signature;
- :mod:`~maskshift.run.loop`: the checkpointed training loop;
- :mod:`~maskshift.run.select`, :mod:`~maskshift.run.results`, :mod:`~maskshift.run.plots`: the
  best step on val, ``results.json`` and ``edited/``, the plots;
- :mod:`~maskshift.run.policy`: a trained policy as a reusable editor;
- :mod:`~maskshift.run.sequence_policy`: :func:`train_sequence_policy`, a policy trained for
  sequences of requests;
- :mod:`~maskshift.run.evaluate`, :mod:`~maskshift.run.compare`: what ``maskshift.evaluate`` and
  ``maskshift.compare`` run.
"""

from maskshift.run.build import build_env
from maskshift.run.config import (
    ALGOS,
    DEFAULT_LR,
    DEFAULT_TOLERANCE,
    DEFAULT_TOTAL_STEPS,
    OutputDirError,
    RunConfig,
    TrainingError,
    make_run_config,
)
from maskshift.run.pipeline import check_out_dir, reselect, reuse_or_run, train_and_evaluate
from maskshift.run.results import finished_run, summary_table
from maskshift.run.sequence_policy import train_sequence_policy

__all__ = ["ALGOS", "DEFAULT_LR", "DEFAULT_TOLERANCE", "DEFAULT_TOTAL_STEPS", "OutputDirError",
           "RunConfig", "TrainingError", "build_env", "check_out_dir", "finished_run",
           "make_run_config", "reselect", "reuse_or_run", "summary_table", "train_and_evaluate",
           "train_sequence_policy"]
