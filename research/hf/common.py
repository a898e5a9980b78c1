"""What every family shares: reading config fields, the import defaults, the output layer."""

from __future__ import annotations

import ml_collections

from research.hf.tables import Rule, transposed
from research.model.config import default_model_config, head_dim

_REQUIRED = object()


def field(hf: dict, where: str, name: str, default=_REQUIRED):
  """`hf[name]`, or `default` when absent or null; a missing required field is a ValueError."""
  value = hf.get(name)
  if value is None:
    if default is _REQUIRED:
      raise ValueError(f'{where}: missing required field {name!r}')
    return default
  return value


def unsupported(where: str, name: str, value, why: str):
  raise ValueError(f'{where}: {name}={value!r} is not supported: {why}')


def dims(c: ml_collections.ConfigDict) -> tuple[int, int, int, int, int, int]:
  """(V, D, N, K, H, F): vocab, model width, query heads, key/value heads, head size, MLP width."""
  return c.vocab_size, c.d_model, c.num_heads, c.num_kv_heads, head_dim(c), c.d_ff


def base_config(hf: dict, where: str) -> ml_collections.ConfigDict:
  """Defaults plus the settings every import shares: float32, unscanned layers, XLA attention."""
  c = default_model_config()
  c.dtype = 'float32'
  c.param_dtype = 'float32'
  c.scan_layers = False
  c.attention_impl = 'xla'
  c.dropout_rate = 0.0  # inference defaults; set dropout for fine-tuning
  c.init_std = float(field(hf, where, 'initializer_range', c.init_std))
  return c


def unembedding_rules(c: ml_collections.ConfigDict) -> list[Rule]:
  """The untied output matrix, `lm_head` [V, D] <-> our `unembed` [D, V]; none when tied."""
  if c.tied_embedding:
    return []
  return [transposed('lm_head.weight', 'unembed', (c.d_model, c.vocab_size))]
