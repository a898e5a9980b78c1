"""Activation patching (clean vs corrupted prompt, by layer, position and head) and head ablation.

Patching runs the corrupted prompt with one activation taken from the clean run and measures a
metric of the logits (e.g. the logit difference between the clean and the corrupted answer); the
places where it moves the metric back towards the clean value carry the behaviour. Every patched
run of a sweep shares one compiled program (the patch is a mask, not a new trace).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from research.interp.capture import PATCHABLE, forward, jitted_forward, prepare

Metric = Callable[[jax.Array], jax.Array]  # float32 logits [B, T, V] -> a scalar


def logit_difference(position: int, answer_B, wrong_B) -> Metric:
  """Metric: mean over rows of logit[answer] - logit[wrong] at `position`."""
  answer_B, wrong_B = jnp.asarray(answer_B, jnp.int32), jnp.asarray(wrong_B, jnp.int32)

  def metric(logits_BxTxV):
    at_BxV = logits_BxTxV[:, position]
    rows_B = jnp.arange(at_BxV.shape[0])
    return jnp.mean(at_BxV[rows_B, answer_B] - at_BxV[rows_B, wrong_B])

  return metric


def next_token_loss_metric(tokens_BxT) -> Metric:
  """Metric: mean next-token cross-entropy (nats) of `tokens_BxT`."""
  tokens_BxT = jnp.asarray(tokens_BxT, jnp.int32)

  def metric(logits_BxTxV):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV[:, :-1],
                                                                    tokens_BxT[:, 1:]))

  return metric


def _one_hot_masks(shape: tuple[int, ...]) -> np.ndarray:
  """[prod(shape), *shape] booleans: mask m sets exactly the m-th element (row-major)."""
  size = int(np.prod(shape))
  return np.eye(size, dtype=bool).reshape((size,) + shape)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sweep(model_config, point, metric, params, tokens_BxT, values, masks_MxLx):
  def run(mask):
    return metric(forward(model_config, params, tokens_BxT, {point: (mask, values)})['logits'])
  return jax.lax.map(run, masks_MxLx)


def patch_sweep(model_config: ml_collections.ConfigDict, params, clean_BxT, corrupted_BxT,
                metric: Metric, point: str = 'resid_pre') -> np.ndarray:
  """The metric of the corrupted run with one clean activation patched in, for every place.

  point 'resid_pre', 'attn_out' or 'mlp_out' -> float32 [L, T]: that point of layer l at
  position t (all rows); 'heads' -> [L, N]: head n of layer l at every position. Compare with
  the metric of the unpatched clean and corrupted runs (`metric(capture(...)['logits'])`).
  """
  if point not in PATCHABLE:
    raise ValueError(f'point={point!r}: expected one of {PATCHABLE}')
  c, p, clean_BxT, corrupted_BxT = prepare(model_config, params, clean_BxT, corrupted_BxT)
  clean = jitted_forward(c, p, clean_BxT)
  l, t = c.num_layers, clean_BxT.shape[1]
  if point == 'heads':
    masks_MxLxN = _one_hot_masks((l, c.num_heads))
    masks = np.broadcast_to(masks_MxLxN[:, :, None, :], masks_MxLxN.shape[:2] + (t, c.num_heads))
    shape = (l, c.num_heads)
  else:
    masks, shape = _one_hot_masks((l, t)), (l, t)
  out_M = _sweep(c, point, metric, p, corrupted_BxT, clean[point], jnp.asarray(masks))
  return np.asarray(out_M, np.float32).reshape(shape)


def ablate_heads(model_config: ml_collections.ConfigDict, params, tokens_BxT,
                 metric: Metric | None = None, kind: str = 'zero') -> np.ndarray:
  """float32 [L, N]: the metric (default: next-token loss) with head n of layer l knocked out at
  every position: its output set to zero (`kind='zero'`) or to its mean over rows and positions
  in this batch (`kind='mean'`)."""
  if kind not in ('zero', 'mean'):
    raise ValueError(f"kind={kind!r}: expected 'zero' or 'mean'")
  c, p, tokens_BxT = prepare(model_config, params, tokens_BxT)
  metric = metric or next_token_loss_metric(tokens_BxT)
  heads_LxBxTxNxH = jitted_forward(c, p, tokens_BxT)['heads']
  if kind == 'zero':
    values = jnp.zeros_like(heads_LxBxTxNxH)
  else:
    values = jnp.broadcast_to(heads_LxBxTxNxH.mean(axis=(1, 2), keepdims=True),
                              heads_LxBxTxNxH.shape)
  l, t, n = c.num_layers, tokens_BxT.shape[1], c.num_heads
  masks_MxLxN = _one_hot_masks((l, n))
  masks = jnp.asarray(np.broadcast_to(masks_MxLxN[:, :, None, :], (l * n, l, t, n)))
  return np.asarray(_sweep(c, 'heads', metric, p, tokens_BxT, values, masks),
                    np.float32).reshape(l, n)
