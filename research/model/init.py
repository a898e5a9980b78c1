"""Fresh parameters of the model, and their shapes without allocating them.

Params carry their logical axis names (`nn.LogicallyPartitioned` boxes) until `nn.unbox`; the
shardings of a run are derived from those names, the train state holds the unboxed arrays.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model.transformer import Transformer


def init_params(model_config: ml_collections.ConfigDict, seed: int = 0, boxed: bool = False):
  """The model's initial params from `seed`; `boxed=True` keeps the logical axis names."""
  tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
  params = Transformer(model_config).init(jax.random.key(seed), tokens_1x1)['params']
  return params if boxed else nn.unbox(params)


def abstract_params(model_config: ml_collections.ConfigDict, boxed: bool = False):
  """ShapeDtypeStructs of the params (boxed: with their logical axis names); nothing allocated."""
  return jax.eval_shape(lambda: init_params(model_config, 0, boxed))
