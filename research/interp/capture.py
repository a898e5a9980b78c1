"""Activations of a forward pass at named points, captured and patched with Flax interception.

The model is run unscanned and without remat (scanned params are split per layer), with
`flax.linen.intercept_methods` reading and replacing the inputs and outputs of each block, its
attention and its MLP, and with the 'intermediates' the attention layer sows (queries, keys and
each head's output). Nothing here changes the model or its compiled training step.

Points, each stacked over layers:
  resid_pre [L, B, T, D]  the input of block l (the residual stream before it)
  attn_out  [L, B, T, D]  the attention sub-layer's output (before the residual add)
  mlp_out   [L, B, T, D]  the MLP sub-layer's output
  queries   [L, B, T, N, H] and keys [L, B, T, K, H]: after rotary positions, as attention sees them
  heads     [L, B, T, N, H]  each head's attention output, before the output projection
"""

from __future__ import annotations

import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model import Transformer
from research.model.attention import Attention
from research.model.block import Block
from research.model.config import validate_model_config
from research.model.mlp import MLP

POINTS = ('resid_pre', 'attn_out', 'mlp_out', 'queries', 'keys', 'heads')
PATCHABLE = ('resid_pre', 'attn_out', 'mlp_out', 'heads')  # what `patches` may replace
_SOWN = ('queries', 'keys', 'heads')
_LAYER = re.compile(r'layers_(\d+)$')


def analysis_config(model_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The same model, unscanned and without remat: one named module per layer to intercept."""
  validate_model_config(model_config)
  c = ml_collections.ConfigDict(model_config.to_dict())
  c.scan_layers, c.remat = False, 'none'
  return c


def analysis_params(model_config: ml_collections.ConfigDict, params) -> dict:
  """Boxed or plain, scanned or not, {'params': ...}-wrapped or not -> plain per-layer params."""
  params = flax.core.unfreeze(nn.unbox(params))
  if isinstance(params, dict) and set(params) == {'params'}:
    params = params['params']
  if not isinstance(params, dict) or 'embed' not in params:
    raise ValueError('params: expected the Transformer params tree (with an "embed" leaf)')
  params = dict(params)
  if 'layers' in params:  # scan_layers=True: every leaf has a leading [num_layers] axis
    stacked = params.pop('layers')
    for i in range(model_config.num_layers):
      params[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return jax.tree.map(jnp.asarray, params)


def layer_of(module: nn.Module) -> int:
  """The layer index of a block, or of a sub-layer inside block `layers_{i}`."""
  for name in reversed(module.path):
    match = _LAYER.match(name)
    if match:
      return int(match.group(1))
  raise ValueError(f'{"/".join(module.path)}: not inside a layer')


def _where(mask_T, new_BxTx, old_BxTx):
  """`new` at the positions where `mask_T` is set (any trailing axes broadcast), else `old`."""
  mask = mask_T.reshape((1,) + mask_T.shape + (1,) * (old_BxTx.ndim - 1 - mask_T.ndim))
  return jnp.where(mask, new_BxTx.astype(old_BxTx.dtype), old_BxTx)


def _interceptor(record: dict, patches: dict):
  """Records each layer's points into `record[point][layer]` and applies `patches` on the way."""

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or not isinstance(module, (Block, Attention, MLP)):
      return next_fun(*args, **kwargs)
    layer = layer_of(module)
    if isinstance(module, Block):
      x_BxTxD = args[0]
      if 'resid_pre' in patches:
        mask_LxT, values_LxBxTxD = patches['resid_pre']
        x_BxTxD = _where(mask_LxT[layer], values_LxBxTxD[layer], x_BxTxD)
      record['resid_pre'][layer] = x_BxTxD
      out = next_fun(x_BxTxD, *args[1:], **kwargs)
      record['resid_final'] = out[0]
      return out
    y_BxTxD = next_fun(*args, **kwargs)
    if isinstance(module, Attention):
      for name in _SOWN:
        record[name][layer] = module.get_variable('intermediates', name)[-1]
      if 'heads' in patches:  # y is linear in each head's output: swap the head's share of it
        mask_LxTxN, values_LxBxTxNxH = patches['heads']
        z_BxTxNxH = record['heads'][layer]
        delta_BxTxNxH = _where(mask_LxTxN[layer], values_LxBxTxNxH[layer], z_BxTxNxH) - z_BxTxNxH
        wo_NxHxD = module.get_variable('params', 'out').astype(y_BxTxD.dtype)
        y_BxTxD = y_BxTxD + jnp.einsum('btnh,nhd->btd', delta_BxTxNxH.astype(y_BxTxD.dtype),
                                       wo_NxHxD)
      point = 'attn_out'
    else:
      point = 'mlp_out'
    if point in patches:
      mask_LxT, values_LxBxTxD = patches[point]
      y_BxTxD = _where(mask_LxT[layer], values_LxBxTxD[layer], y_BxTxD)
    record[point][layer] = y_BxTxD
    return y_BxTxD

  return intercept


def _check_patches(patches: dict) -> None:
  for point in patches:
    if point not in PATCHABLE:
      raise ValueError(f'patches: unknown point {point!r}; expected one of {PATCHABLE}')


def forward(model_config, params, tokens_BxT, patches=None) -> dict:
  """Runs the model -> {'logits': [B, T, V] float32, 'resid_final': [B, T, D], and every point of
  `POINTS` stacked over layers, in float32}.

  `patches` maps a point of `PATCHABLE` to `(mask, values)`: `values` shaped as that point's
  capture and `mask` boolean [L, T] ([L, T, N] for 'heads'); where the mask is set, the run uses
  `values` instead of its own activation there, and everything downstream sees the change.
  `model_config` and `params` must already be `analysis_config`/`analysis_params`.
  """
  patches = patches or {}
  _check_patches(patches)
  record = {point: {} for point in POINTS}
  with nn.intercept_methods(_interceptor(record, patches)):
    logits_BxTxV, _ = Transformer(model_config).apply({'params': params}, tokens_BxT,
                                                      mutable=['intermediates'])
  out = {'logits': logits_BxTxV.astype(jnp.float32),
         'resid_final': record['resid_final'].astype(jnp.float32)}
  for point in POINTS:
    layers = record[point]
    out[point] = jnp.stack([layers[i] for i in range(len(layers))]).astype(jnp.float32)
  return out


def prepare(model_config: ml_collections.ConfigDict, params, *token_arrays):
  """-> (frozen analysis config, analysis params, int32 token arrays), for the jitted functions
  here that take the config as a static argument. ValueError naming `tokens_BxT` unless each
  array is [batch, length <= max_seq_len] of valid ids, all of one shape."""
  c = analysis_config(model_config)
  arrays = [jnp.asarray(t, jnp.int32) for t in token_arrays]
  for tokens_BxT in arrays:
    if tokens_BxT.ndim != 2 or not 0 < tokens_BxT.shape[1] <= c.max_seq_len:
      raise ValueError(f'tokens_BxT: expected [batch, length <= model.max_seq_len='
                       f'{c.max_seq_len}], got shape {tokens_BxT.shape}')
    if int(tokens_BxT.min()) < 0 or int(tokens_BxT.max()) >= c.vocab_size:
      raise ValueError(f'tokens_BxT: token ids must lie in [0, {c.vocab_size})')
  if len({t.shape for t in arrays}) > 1:
    raise ValueError(f'tokens: the arrays must have one shape, got {[t.shape for t in arrays]}')
  return (ml_collections.FrozenConfigDict(c), analysis_params(c, params), *arrays)


jitted_forward = jax.jit(forward, static_argnums=0)  # the config (frozen) is static


def capture(model_config: ml_collections.ConfigDict, params, tokens_BxT, patches=None) -> dict:
  """`forward` (see there) for any config and params: scanned, boxed, remat'd or not; jitted."""
  c, p, tokens_BxT = prepare(model_config, params, tokens_BxT)
  return jitted_forward(c, p, tokens_BxT, patches)
