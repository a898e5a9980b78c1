"""Rollouts: responses sampled from the policy through `research.inference` (KV cache, sampling),
laid out for scoring and training, and their rewards from a verifier or a reward model.

A rollout row is the prompt, then the response (up to and including <|end|>, or `max_new_tokens`
tokens), then padding; its mask marks the response. Row b samples with seed `seed + b`, so a step's
rollouts depend on the params and the step's seed alone: a resumed run samples the same ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from research.inference import generate
from research.posttrain.chat import ChatTemplate
from research.posttrain.tasks import verify


@dataclasses.dataclass
class Rollout:
  tokens: np.ndarray  # [R, T] int32: prompt, response, padding
  mask: np.ndarray  # [R, T] int32: 1 on the response tokens
  prompts: list  # [R] prompt texts
  responses: list  # [R] response texts (without <|end|>)


def sample(model_config, params, template: ChatTemplate, prompt_BxT, lengths_B, prompts: list,
           max_new_tokens: int, seed: int, temperature: float = 1.0, repeat: int = 1) -> Rollout:
  """`repeat` responses per prompt (consecutive rows), at `temperature` (0: greedy)."""
  prompt_RxT = np.repeat(np.asarray(prompt_BxT), repeat, axis=0)
  lengths_R = np.repeat(np.asarray(lengths_B), repeat)
  tokens_RxT = generate(model_config, params, prompt_RxT, max_new_tokens, temperature=temperature,
                        seed=seed, prompt_lengths=lengths_R, stop_tokens=(template.end_id,),
                        pad_id=template.pad_id)
  mask_RxT = np.zeros_like(tokens_RxT)
  responses = []
  for row, start in enumerate(lengths_R):
    new = tokens_RxT[row, start:start + max_new_tokens]
    ends = np.flatnonzero(new == template.end_id)
    length = int(ends[0]) + 1 if len(ends) else max_new_tokens
    mask_RxT[row, start:start + length] = 1
    responses.append(template.response_text(new[:length]))
  return Rollout(tokens_RxT.astype(np.int32), mask_RxT.astype(np.int32),
                 [p for p in prompts for _ in range(repeat)], responses)


def verifier_scores(task, rollout: Rollout) -> np.ndarray:
  """[R] float32 gold rewards: 1 for a right answer, 0 otherwise."""
  return np.asarray([verify(task, p, r) for p, r in zip(rollout.prompts, rollout.responses)],
                    np.float32)
