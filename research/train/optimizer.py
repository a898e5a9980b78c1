"""AdamW with global-norm clipping, a weight-decay mask sparing norms, biases, embeddings and
Mamba's A_log and D, and
muP's per-layer learning rates (hidden matrices at learning_rate / width multiplier)."""

from __future__ import annotations

import jax
import ml_collections
import optax

from research.model import mup
from research.train.schedules import make_schedule

# Norms, biases, embeddings, and Mamba's state decay rates and skip (as mamba_ssm leaves them).
NO_DECAY_NAMES = ('scale', 'bias', 'embed', 'pos_embed', 'embedding', 'unembed', 'A_log', 'D')


def decay_mask(params, decay_everything: bool = False):
  """True for leaves AdamW should decay: matrices, but not norms, biases or embedding tables."""
  def keep(path, _):
    if decay_everything:
      return True
    names = [getattr(k, 'key', str(k)) for k in path]
    return not any(n in NO_DECAY_NAMES or n.endswith('_bias') for n in names)
  return jax.tree_util.tree_map_with_path(keep, params)


def learning_rate_multipliers(params, model_config):
  """Per-leaf factors on the learning rate: muP's 1 / m for hidden matrices, else 1."""
  def factor(path, _):
    return mup.learning_rate_multiplier(model_config, [getattr(k, 'key', str(k)) for k in path])
  return jax.tree_util.tree_map_with_path(factor, params)


def _scale_per_leaf(model_config) -> optax.GradientTransformation:
  """Multiplies each leaf's update by its `learning_rate_multipliers` factor."""
  def update(updates, params=None):
    factors = learning_rate_multipliers(updates, model_config)
    return jax.tree.map(lambda u, f: u if f == 1.0 else u * f, updates, factors)
  return optax.stateless(update)


def make_optimizer(t: ml_collections.ConfigDict,
                   model_config: ml_collections.ConfigDict | None = None
                   ) -> optax.GradientTransformation:
  """Clip by global norm, then AdamW on the configured schedule (float32 moments); under muP
  (`model_config.parametrization`) each hidden matrix's update is scaled by 1 / m."""
  adamw = optax.adamw(make_schedule(t), b1=t.b1, b2=t.b2, eps=t.eps, weight_decay=t.weight_decay,
                      mask=lambda p: decay_mask(p, t.decay_norms_biases_embeddings))
  chain = [optax.clip_by_global_norm(t.grad_clip_norm)] if t.grad_clip_norm > 0 else []
  chain.append(adamw)
  if model_config is not None and mup.width_multiplier(model_config) != 1.0:
    chain.append(_scale_per_leaf(model_config))
  return chain[0] if len(chain) == 1 else optax.chain(*chain)
