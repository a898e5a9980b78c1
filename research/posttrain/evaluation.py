"""How good a policy is: verifier accuracy (greedy and sampled), KL to a reference, reward-model
score, on held-out prompts. The run evaluates with these, and so does the report (for the base).
"""

from __future__ import annotations

import functools
import json

import jax
import ml_collections
import numpy as np

from research.posttrain import reward_model as reward_lib
from research.posttrain import rollouts
from research.posttrain.chat import ChatTemplate
from research.posttrain.steps import sampled_kl

EVAL_SEED = 1_000_003  # sampled evaluations use this seed at every step: the same draws each time


@functools.lru_cache(maxsize=16)
def _kl_program(config_json: str):
  m = ml_collections.ConfigDict(json.loads(config_json))
  return jax.jit(lambda params, reference, tokens, mask: sampled_kl(m, params, reference, tokens,
                                                                    mask))


@functools.lru_cache(maxsize=16)
def _score_program(config_json: str):
  m = ml_collections.ConfigDict(json.loads(config_json))
  return jax.jit(lambda params, tokens, mask: reward_lib.sequence_scores(m, params, tokens, mask))


def reward_model_scores(reward_config, reward_params, rollout: rollouts.Rollout) -> np.ndarray:
  """[R] float32 scores of a reward model (`posttrain.stage='reward'` params) of rollouts."""
  return np.asarray(_score_program(reward_config.to_json())(reward_params, rollout.tokens,
                                                            rollout.mask), np.float32)


def kl_to_reference(model_config, params, reference_params, rollout: rollouts.Rollout) -> float:
  """KL(pi || ref) of responses sampled from pi, summed over each response, mean over rows."""
  return float(_kl_program(model_config.to_json())(params, reference_params, rollout.tokens,
                                                   rollout.mask))


def evaluate_policy(model_config, params, template: ChatTemplate, prompt_rows: dict, prompts: list,
                    max_new_tokens: int, task=None, reference_params=None,
                    reward_model=None) -> dict:
  """Metrics of a policy on prompts (`packing.prompt_rows` and their texts).

  eval_accuracy: verifier accuracy of greedy responses; eval_sampled_accuracy: of responses at
  temperature 1; eval_kl: KL to `reference_params` on those samples; eval_proxy_score: mean score
  of `reward_model` = (config, params) on them. Only what the arguments allow is computed.
  """
  sample = functools.partial(rollouts.sample, model_config, params, template,
                             prompt_rows['prompt'], prompt_rows['length'], prompts, max_new_tokens)
  greedy, sampled = sample(seed=0, temperature=0.0), sample(seed=EVAL_SEED, temperature=1.0)
  out = {'eval_response_length': float(sampled.mask.sum(1).mean())}
  if task is not None:
    out['eval_accuracy'] = float(rollouts.verifier_scores(task, greedy).mean())
    out['eval_sampled_accuracy'] = float(rollouts.verifier_scores(task, sampled).mean())
  if reference_params is not None:
    out['eval_kl'] = kl_to_reference(model_config, params, reference_params, sampled)
  if reward_model is not None:
    out['eval_proxy_score'] = float(reward_model_scores(*reward_model, sampled).mean())
  return out
