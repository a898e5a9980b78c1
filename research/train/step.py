"""The jitted train step (loss, gradients, accumulation, update) and the eval step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from research.model import Transformer
from research.model import moe
from research.model.config import mtp_field
from research.train.fused_loss import chunk_length, fused_cross_entropy
from research.train.state import TrainState


def cross_entropy(logits_BxTxV, targets_BxT, z_loss: float = 0.0):
  """Mean next-token cross-entropy in float32 (nats), plus z_loss * mean(logsumexp^2) if set."""
  logits = logits_BxTxV.astype(jnp.float32)
  nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits, targets_BxT)
  loss = jnp.mean(nll_BxT)
  if z_loss:
    loss += z_loss * jnp.mean(jnp.square(jax.nn.logsumexp(logits, axis=-1)))
  return loss, jnp.mean(nll_BxT)


def mtp_losses(heads, unembed_DxV, targets_BxT, loss_chunk_len: int = 0) -> list:
  """Mean cross-entropy of each multi-token head: head k (from 0) at position t predicts
  targets[t + k + 1], so its last k + 1 positions have no target and are left out. With
  `loss_chunk_len` > 0 each head's output layer and loss are fused like the main one's."""
  losses = []
  for k, h_BxTxD in enumerate(heads):
    h_BxTxD, head_targets_BxT = h_BxTxD[:, :-(k + 1)], targets_BxT[:, k + 1:]
    if loss_chunk_len:
      chunk_len = chunk_length(head_targets_BxT.shape[1], loss_chunk_len)
      losses.append(fused_cross_entropy(h_BxTxD, unembed_DxV, head_targets_BxT, chunk_len)[0])
      continue
    logits_BxTxV = jnp.einsum('btd,dv->btv', h_BxTxD, unembed_DxV,
                              preferred_element_type=jnp.float32)
    losses.append(cross_entropy(logits_BxTxV, head_targets_BxT)[1])
  return losses


def weighted_cross_entropy(logits_BxTxV, targets_BxT, weights_BxT, z_loss: float = 0.0):
  """`cross_entropy` averaged over the positions of weight 1 only (MLM's selected tokens, a
  prefix LM's targets after the prefix)."""
  logits = logits_BxTxV.astype(jnp.float32)
  weights_BxT = weights_BxT.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(weights_BxT), 1.0)
  nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits, targets_BxT)
  nll = jnp.sum(nll_BxT * weights_BxT) / count
  loss = nll
  if z_loss:
    loss += z_loss * jnp.sum(jnp.square(jax.nn.logsumexp(logits, axis=-1)) * weights_BxT) / count
  return loss, nll


def make_train_step(model_config, optimizer, z_loss: float = 0.0, grad_accum_steps: int = 1,
                    loss_chunk_len: int = 0, mtp_loss_weight: float = 1.0, pipeline=None):
  """A pure `(state, batch) -> (state, metrics)`; the global batch is split into micro-batches.

  A batch with 'weights' and 'in_prefix' (train.objective other than causal) is trained with a
  prefix / bidirectional attention mask and the loss on its weighted targets, unfused.

  With `loss_chunk_len` > 0 the output layer and the loss are fused over chunks of that many
  positions (at most; see `fused_loss.chunk_length`), so the [B, T, V] logits are never stored.
  Mixture-of-Experts layers add their weighted auxiliary losses (`moe.aux_loss`) to the loss
  that is differentiated, and their per-layer figures (`moe.metrics`) to the metrics.
  Multi-token prediction heads (`model.mtp_heads`) add `mtp_loss_weight` x the mean of their
  losses, each logged as `mtp_loss_{k}` (k tokens ahead); `loss` stays the next-token loss.
  A `pipeline` schedule (research/model/pipeline.py) runs the layers of each micro-batch in
  pipeline stages.
  """
  model = Transformer(model_config, pipeline=pipeline)
  heads = mtp_field(model_config, 'mtp_heads')

  def loss_fn(params, batch):
    inputs_BxT, targets_BxT = batch['inputs'], batch['targets']
    apply = lambda **kw: model.apply({'params': params}, inputs_BxT, mutable=[moe.COLLECTION],
                                     return_mtp=heads > 0, **kw)
    if 'weights' in batch:  # a non-causal objective (validation refuses MTP heads with one)
      logits_BxTxV, sown = apply(in_prefix_BxT=batch['in_prefix'])
      loss, nll = weighted_cross_entropy(logits_BxTxV, targets_BxT, batch['weights'], z_loss)
    elif loss_chunk_len:
      outputs, sown = apply(return_hidden=True)
      (hidden_BxTxD, unembed_DxV), head_outputs = outputs if heads else (outputs, ())
      chunk_len = chunk_length(inputs_BxT.shape[1], loss_chunk_len)
      loss, nll = fused_cross_entropy(hidden_BxTxD, unembed_DxV, targets_BxT, chunk_len, z_loss)
    else:
      outputs, sown = apply(return_hidden=heads > 0)
      if heads:
        ((hidden_BxTxD, unembed_DxV), head_outputs) = outputs
        outputs = jnp.einsum('btd,dv->btv', hidden_BxTxD, unembed_DxV,
                             preferred_element_type=jnp.float32)
      loss, nll = cross_entropy(outputs, targets_BxT, z_loss)
    sown = sown.get(moe.COLLECTION, {})
    metrics = moe.metrics(sown, model_config)
    if heads:
      losses = mtp_losses(head_outputs, unembed_DxV, targets_BxT, loss_chunk_len)
      loss = loss + mtp_loss_weight * sum(losses) / heads
      metrics.update({f'mtp_loss_{k + 2}': l for k, l in enumerate(losses)})
    return loss + moe.aux_loss(sown, model_config), (nll, metrics)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch):
    if grad_accum_steps == 1:
      (loss, (nll, extra)), grads = grad_fn(state.params, batch)
    else:
      micro = jax.tree.map(lambda x: x.reshape(grad_accum_steps, -1, *x.shape[1:]), batch)
      weight_total = jnp.sum(batch['weights']) if 'weights' in batch else None

      def accumulate(carry, mb):
        (loss, (nll, extra)), grads = grad_fn(state.params, mb)
        if 'weights' in mb:  # a weighted mean per micro-batch: weigh it by its share of targets
          share = jnp.sum(mb['weights']) * grad_accum_steps / jnp.maximum(weight_total, 1.0)
          loss, nll, grads = jax.tree.map(lambda x: x * share, (loss, nll, grads))
        return jax.tree.map(jnp.add, carry, (loss, nll, extra, grads)), None

      first = jax.tree.map(lambda x: x[0], micro)
      extra_shapes = jax.eval_shape(loss_fn, state.params, first)[1][1]
      zeros = (0.0, 0.0, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), extra_shapes),
               jax.tree.map(jnp.zeros_like, state.params))
      (loss, nll, extra, grads), _ = jax.lax.scan(accumulate, zeros, micro)
      loss, nll, extra, grads = jax.tree.map(lambda x: x / grad_accum_steps,
                                             (loss, nll, extra, grads))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': nll, 'total_loss': loss, 'grad_norm': optax.tree.norm(grads), **extra}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(model_config, pipeline=None):
  """`(params, batch) -> summed nats over the batch's tokens` (summed so batches add exactly;
  a batch with 'weights' counts its weighted targets only, with its prefix mask), the layers in
  pipeline stages when a `pipeline` schedule is given."""
  model = Transformer(model_config, pipeline=pipeline)

  def eval_step(params, batch):
    logits_BxTxV = model.apply({'params': params}, batch['inputs'],
                               in_prefix_BxT=batch.get('in_prefix'))
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxTxV.astype(jnp.float32), batch['targets'])
    if 'weights' in batch:
      nll_BxT = nll_BxT * batch['weights']
    return jnp.sum(nll_BxT)

  return eval_step


def evaluate(eval_step, params, eval_set) -> dict:
  """Mean loss per token (nats) and bits per UTF-8 byte over the fixed validation batches."""
  total_nats = sum(float(eval_step(params, b)) for b in eval_set.batches)
  return {'eval_loss': total_nats / eval_set.num_tokens,
          'eval_bits_per_byte': total_nats / math.log(2) / eval_set.num_bytes}
