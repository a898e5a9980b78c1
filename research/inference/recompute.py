"""The no-cache baseline: every step reruns the whole sequence. For tests and benchmarks only.

The sequence lives in a fixed [B, T + N] buffer so one compiled forward serves every step (causal
attention makes the not-yet-written tail irrelevant); each step thus costs a full-length pass.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.inference.generation import check_length, check_prompt
from research.inference.params import prepare_params
from research.inference.quantize import dequantize_params
from research.model import Transformer


@functools.lru_cache(maxsize=16)
def step_program(config_json: str):
  """`(params, buffer_BxS, t) -> buffer` with token t set to the argmax after tokens [0, t)."""
  model = Transformer(ml_collections.ConfigDict(json.loads(config_json)))

  @functools.partial(jax.jit, donate_argnums=(1,))
  def step(params, buffer_BxS, t):
    logits_BxSxV = model.apply({'params': dequantize_params(params)}, buffer_BxS)
    next_B = jnp.argmax(jax.lax.dynamic_index_in_dim(logits_BxSxV, t - 1, 1, False), axis=-1)
    return jax.lax.dynamic_update_index_in_dim(buffer_BxS, next_B.astype(jnp.int32), t, 1)

  return step


def greedy_without_cache(model_config: ml_collections.ConfigDict, params, prompt_tokens_BxT,
                         max_new_tokens: int) -> np.ndarray:
  """Greedy continuation by full recomputation -> int32 [B, T + max_new_tokens]."""
  params = prepare_params(model_config, params)
  prompt, _ = check_prompt(model_config, prompt_tokens_BxT)
  b, t = prompt.shape
  check_length(model_config, t + max_new_tokens)
  step = step_program(model_config.to_json())
  buffer_BxS = jnp.asarray(np.pad(prompt, ((0, 0), (0, max_new_tokens))))
  for i in range(t, t + max_new_tokens):
    buffer_BxS = step(params, buffer_BxS, i)
  return np.asarray(buffer_BxS)
