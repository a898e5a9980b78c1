"""The logit lens (nostalgebraist 2020): each layer's residual stream read out through the final
norm and the output layer, as if the layers after it were skipped, with its next-token loss."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research.interp.capture import forward, prepare
from research.interp.streams import stream_from
from research.model.config import resolve_dtype
from research.model.norms import Norm


def readout(model_config: ml_collections.ConfigDict, params, x_XxD) -> jax.Array:
  """float32 logits [..., V] of residual-stream vectors: the model's final norm and output layer,
  computed as the model computes them. `params` as `analysis_params` returns them."""
  c = model_config
  dtype, param_dtype = resolve_dtype(c.dtype), jnp.dtype(c.param_dtype)
  if c.final_norm:
    x_XxD = Norm(c.norm, c.norm_eps, dtype, param_dtype).apply(
        {'params': params['final_norm']}, x_XxD)
  unembed_DxV = params['embed'].T if c.tied_embedding else params['unembed']
  return jnp.einsum('...d,dv->...v', x_XxD.astype(dtype), unembed_DxV.astype(dtype),
                    preferred_element_type=jnp.float32)


@dataclasses.dataclass(frozen=True)
class LogitLens:
  """logits [L + 1, B, T, V] read from each entry of the residual stream (entry L: the model's
  own logits); loss [L + 1]: mean next-token cross-entropy (nats) of each layer's readout."""
  logits: np.ndarray
  loss: np.ndarray


def logit_lens(model_config: ml_collections.ConfigDict, params, tokens_BxT,
               targets_BxT=None) -> LogitLens:
  """Reads every layer's residual stream out through the final norm and unembedding.

  The loss is against `targets_BxT` if given, else against the next token (the last position,
  which has none, is left out of the loss).
  """
  c, p, tokens_BxT = prepare(model_config, params, tokens_BxT)
  if targets_BxT is not None:
    targets_BxT = jnp.asarray(targets_BxT, jnp.int32)
    if targets_BxT.shape != tokens_BxT.shape:
      raise ValueError(f'targets_BxT: shape {targets_BxT.shape} differs from tokens_BxT '
                       f'{tokens_BxT.shape}')
  logits_LxBxTxV, loss_L1 = _lens(c, p, tokens_BxT, targets_BxT)
  return LogitLens(logits=np.asarray(logits_LxBxTxV), loss=np.asarray(loss_L1))


@functools.partial(jax.jit, static_argnums=0)
def _lens(model_config, params, tokens_BxT, targets_BxT):
  logits_LxBxTxV = readout(model_config, params,
                           stream_from(forward(model_config, params, tokens_BxT)))
  if targets_BxT is None:
    scored_LxBxTxV, targets_BxT = logits_LxBxTxV[:, :, :-1], tokens_BxT[:, 1:]
  else:
    scored_LxBxTxV = logits_LxBxTxV
  nll_LxBxT = optax.softmax_cross_entropy_with_integer_labels(
      scored_LxBxTxV, jnp.broadcast_to(targets_BxT, scored_LxBxTxV.shape[:-1]))
  return logits_LxBxTxV, nll_LxBxT.mean((1, 2))
