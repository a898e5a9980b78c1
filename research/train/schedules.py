"""Learning-rate schedules: warmup + cosine decay to a floor, constant, warmup-stable-decay.

Warmup-stable-decay (Hagele et al. 2024) holds the peak and then cools down over the last
`decay_fraction` of the steps, linearly or as 1 - sqrt: the shape a cooldown branch of a
constant-learning-rate run trains with.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ('cosine', 'constant', 'wsd')
DECAY_SHAPES = ('linear', '1-sqrt')


def cooldown_steps(t: ml_collections.ConfigDict) -> int:
  """Steps the wsd schedule spends decaying: `decay_fraction` of the run, at least 1."""
  return max(1, int(round(t.decay_fraction * t.num_steps)))


def _decay(shape: str, peak: float, floor: float, steps: int) -> optax.Schedule:
  """From `peak` to `floor` over `steps`: linearly, or as floor + (peak - floor)(1 - sqrt(s/k))."""
  if shape == 'linear':
    return optax.linear_schedule(peak, floor, steps)
  if shape == '1-sqrt':
    return lambda s: floor + (peak - floor) * (1 - jnp.sqrt(jnp.clip(s / steps, 0.0, 1.0)))
  raise ValueError(f'train.decay_shape={shape!r}: unknown; expected one of {DECAY_SHAPES}')


def make_schedule(t: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to `learning_rate`, then the configured shape over `num_steps`."""
  peak, warmup, total = t.learning_rate, t.warmup_steps, t.num_steps
  floor = peak * t.min_lr_ratio
  if t.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1), floor)
  warm = optax.linear_schedule(0.0, peak, warmup)
  if t.schedule == 'constant':
    return optax.join_schedules([warm, optax.constant_schedule(peak)], [warmup])
  if t.schedule == 'wsd':
    decay_steps = cooldown_steps(t)
    stable_end = max(warmup, total - decay_steps)
    return optax.join_schedules(
        [warm, optax.constant_schedule(peak), _decay(t.decay_shape, peak, floor, decay_steps)],
        [warmup, stable_end])
  raise ValueError(f'train.schedule={t.schedule!r}: unknown; expected one of {SCHEDULES}')
