"""Weight matrices that decoding may hand in quantised, multiplied by whatever holds them.

Decoding (research.inference) may pass some weights in a 'quantized' collection instead of
'params': objects with `matmul(x)` (x's trailing axes against the weight's contracted axes) and
`take(ids)` (rows of an embedding). Attention's projections, the MLP's matrices, the embedding
and the output layer read their weights through `matrix` and multiply through `contract` and
`lookup`, so a CPU kernel can read int8/int4 values without writing a float copy first.
`reads_quantized` says which weights those are; every other layer gets float params, as in
training. The model never imports the inference package: it only calls those two methods.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

QUANTIZED = 'quantized'
ATTENTION_MATRICES = ('query', 'key', 'value', 'out')
MLP_MATRICES = ('wi', 'wo', 'wi_gate', 'wi_up')


def is_quantized(w) -> bool:
  return hasattr(w, 'matmul') and hasattr(w, 'take')


def matrix(module: nn.Module, name: str, init, shape, axes, param_dtype):
  """The float param `name` (created by `init` with logical `axes`), or the quantised weight of
  that name when the 'quantized' collection holds one."""
  if module.has_variable(QUANTIZED, name):
    return module.get_variable(QUANTIZED, name)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, param_dtype)


def contract(spec: str, x, w, dtype, preferred_element_type=None):
  """`jnp.einsum(spec, x, w)` with w cast to `dtype`; a quantised w computes the same product
  itself (`spec` must contract x's trailing axes with w's contracted axes, in order)."""
  if is_quantized(w):
    return w.matmul(x.astype(dtype)).astype(preferred_element_type or dtype)
  return jnp.einsum(spec, x, w.astype(dtype), preferred_element_type=preferred_element_type)


def lookup(embed_VxD, ids, dtype):
  """Rows `ids` of an embedding table, float or quantised, in `dtype`."""
  if is_quantized(embed_VxD):
    return embed_VxD.take(ids).astype(dtype)
  return jnp.take(embed_VxD, ids, axis=0).astype(dtype)


def reads_quantized(path: tuple[str, ...], per_layer_ndim: int) -> bool:
  """Whether the weight at `path` of a Transformer's params is read through `matrix`: the
  embedding and output layer, attention's four projections, and dense MLPs' matrices (the MLP
  of a layer, an MoE layer's shared expert, a multi-token head; not an MoE layer's [E, ., .]
  expert stacks, which share those names)."""
  if path in (('embed',), ('unembed',)):
    return True
  if len(path) >= 2 and path[-2] == 'attn' and path[-1] in ATTENTION_MATRICES:
    return True
  return path[-1] in MLP_MATRICES and per_layer_ndim == 2
