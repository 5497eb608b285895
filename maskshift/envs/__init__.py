"""The editing environments: MaskWorld and ShiftWorld (:mod:`~maskshift.envs.worlds`), their
state and parameters (:mod:`~maskshift.envs.state`), what a policy observes
(:mod:`~maskshift.envs.observe`) and the registry (:func:`make`, like ``gymnax.make``)."""

from maskshift.envs.observe import OBSERVATIONS
from maskshift.envs.registry import ENV_ALIASES, REGISTERED_ENVS, make
from maskshift.envs.state import EnvParams, EnvState, check_env_params
from maskshift.envs.worlds import MINIBATCHES, EditWorld, MaskWorld, ShiftWorld

__all__ = ["ENV_ALIASES", "MINIBATCHES", "OBSERVATIONS", "REGISTERED_ENVS", "EditWorld",
           "EnvParams", "EnvState", "MaskWorld", "ShiftWorld", "check_env_params", "make"]
