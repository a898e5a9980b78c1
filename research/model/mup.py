"""Maximal update parametrisation (muP; Yang et al. 2022, Tensor Programs V) for Adam.

`model.parametrization = 'mup'` with `model.mup_base_width` (the d_model the hyperparameters are
tuned at) makes a model of any width behave like its base in the sense that matters for tuning:
activations and their updates keep their size as d_model grows, so the best learning rate found
at the base width stays best. With m = d_model / mup_base_width:

  hidden matrices (attention and feed-forward)  init std / sqrt(m),  Adam learning rate / m
  embeddings, position table, norms, biases     unchanged
  output logits                                 multiplied by 1 / m (tied or untied unembedding)
  attention scores                              q.k / head_dim instead of / sqrt(head_dim)

At m = 1 only the attention scale differs from the standard parametrisation. The train step's
optimizer reads `learning_rate_multiplier`; the model reads the rest.
"""

from __future__ import annotations

import math

import ml_collections

PARAMETRIZATIONS = ('standard', 'mup')
# The params whose both dimensions grow with width: they get the 1/m learning rate.
HIDDEN_MATRICES = ('query', 'key', 'value', 'out', 'wi', 'wo', 'wi_gate', 'wi_up')


def is_mup(c: ml_collections.ConfigDict) -> bool:
  return c.get('parametrization', 'standard') == 'mup'


def width_multiplier(c: ml_collections.ConfigDict) -> float:
  """m = d_model / mup_base_width under muP (base 0: the model's own width); 1 otherwise."""
  if not is_mup(c) or not c.get('mup_base_width', 0):
    return 1.0
  return c.d_model / c.mup_base_width


def hidden_init_std(c: ml_collections.ConfigDict, std: float) -> float:
  """The init std of a hidden matrix: `std` / sqrt(m) (variance proportional to 1 / fan_in)."""
  return std / math.sqrt(width_multiplier(c))


def output_multiplier(c: ml_collections.ConfigDict) -> float:
  """What the logits are multiplied by: 1 / m."""
  return 1.0 / width_multiplier(c)


def attention_query_multiplier(c: ml_collections.ConfigDict, head_size: int) -> float:
  """Queries are multiplied by this before the usual 1 / sqrt(head_size) scaling, making the
  scores q.k / head_size under muP; 1 otherwise."""
  return 1.0 / math.sqrt(head_size) if is_mup(c) else 1.0


def learning_rate_multiplier(c: ml_collections.ConfigDict, path_names) -> float:
  """The factor on the Adam learning rate of the param at `path_names` (its key path)."""
  if not is_mup(c) or not any(n in HIDDEN_MATRICES for n in path_names):
    return 1.0
  return 1.0 / width_multiplier(c)
