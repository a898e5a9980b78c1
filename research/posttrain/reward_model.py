"""A scalar head on the transformer: the reward model and PPO's value model.

The backbone is the training model; its final hidden states, instead of going through the output
layer, go through one learned vector to a scalar per position. A reward model's score of a
sequence is the scalar at its last response token; a value model's estimate for token t is the
scalar of position t - 1, the state in which token t is chosen.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model import Transformer
from research.model.config import resolve_dtype
from research.posttrain.losses import last_token_mask


class ScalarHeadModel(nn.Module):
  """`apply({'params': {'backbone': ..., 'head': ...}}, tokens_BxT)` -> float32 [B, T] scalars."""
  config: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, tokens_BxT):
    c = self.config
    hidden_BxTxD, _ = Transformer(c, name='backbone')(tokens_BxT, return_hidden=True)
    head = nn.Dense(1, dtype=resolve_dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype),
                    kernel_init=nn.with_logical_partitioning(nn.initializers.normal(c.init_std),
                                                             ('embed', None)),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                    name='head')
    return head(hidden_BxTxD)[..., 0].astype(jnp.float32)


def init_head(model_config: ml_collections.ConfigDict, seed: int):
  """Fresh params of the head alone, as `ScalarHeadModel` lays them out: {'kernel': [D, 1],
  'bias': [1]}, the kernel normal with the model's init_std."""
  dtype = jnp.dtype(model_config.param_dtype)
  kernel = model_config.init_std * jax.random.normal(jax.random.key(seed),
                                                     (model_config.d_model, 1), dtype)
  return {'kernel': kernel, 'bias': jnp.zeros((1,), dtype)}


def abstract_params(model_config: ml_collections.ConfigDict, boxed: bool = False):
  """ShapeDtypeStructs of {'backbone', 'head'} (boxed: with logical axis names)."""
  tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
  params = jax.eval_shape(lambda: ScalarHeadModel(model_config).init(
      jax.random.key(0), tokens_1x1)['params'])
  return params if boxed else nn.unbox(params)


def scalars(model_config: ml_collections.ConfigDict, params, tokens_BxT):
  """[B, T] float32 scalars of every position."""
  return ScalarHeadModel(model_config).apply({'params': params}, tokens_BxT)


def sequence_scores(model_config: ml_collections.ConfigDict, params, tokens_BxT, mask_BxT):
  """[B]: the reward model's score of each row, the scalar at its last masked token."""
  return jnp.sum(scalars(model_config, params, tokens_BxT) * last_token_mask(mask_BxT), axis=1)


def token_values(model_config: ml_collections.ConfigDict, params, tokens_BxT):
  """[B, T]: the value model's estimate for token t in column t (from position t - 1), 0 in
  column 0."""
  return jnp.pad(scalars(model_config, params, tokens_BxT)[:, :-1], ((0, 0), (1, 0)))
