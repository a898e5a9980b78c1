"""muP transfer sweeps: the same learning-rate grid at several widths, under the standard
parametrisation and under muP (Yang et al. 2022), to see whether the best learning rate stays put
as the model widens (muP) or drifts (standard: about 1 / width for Adam's hidden matrices).

Every run trains the same number of tokens with the base's depth, d_model = width, heads of
`head_dim` and d_ff = 4 d_model; muP runs use `model.mup_base_width = base_width`. Runs carry
`sweep.kind = 'mup_transfer'`, which the fits read as one learning-rate profile per width and
parametrisation, and keep out of the compute laws.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from research.model import counting
from research.sweeps import generators
from research.sweeps import sizing

KIND = 'mup_transfer'
PARAMETRIZATIONS = ('standard', 'mup')


def mup_transfer_sweep(base: ml_collections.ConfigDict, widths: Sequence[int],
                       learning_rates: Sequence[float], tokens: float, *, base_width: int,
                       parametrizations: Sequence[str] = PARAMETRIZATIONS, head_dim: int = 16,
                       name: str = 'mup_transfer',
                       max_warmup_fraction: float = 0.1) -> list[generators.Entry]:
  """One run per (parametrization, width, learning rate), each on `tokens` tokens."""
  generators.check_positive('widths', widths)
  generators.check_positive('learning_rates', learning_rates)
  for w in list(widths) + [base_width]:
    if w % head_dim:
      raise ValueError(f'widths: {w} is not a multiple of head_dim={head_dim}')
  for p in parametrizations:
    if p not in PARAMETRIZATIONS:
      raise ValueError(f'parametrizations: {p!r} is not one of {PARAMETRIZATIONS}')
  steps = sizing.steps_for_tokens(tokens, base.train.batch_size, base.data.seq_len)
  runs = []
  for parametrization in parametrizations:
    for width in widths:
      shape = sizing.Shape(int(width), base.model.num_layers, int(width) // head_dim, head_dim,
                           4 * int(width))
      model = sizing.apply_shape(base.model, shape)
      model.update(parametrization=parametrization,
                   mup_base_width=int(base_width) if parametrization == 'mup' else 0)
      n = counting.predict_param_counts(model).total
      for lr in learning_rates:
        config = generators.with_steps(base, steps, max_warmup_fraction)
        config.model = model
        config.train.learning_rate = float(lr)
        label = f'{parametrization}-d{width}-lr{lr:.3g}'
        runs.append((label, generators.with_sweep(
            config, name=name, kind=KIND, label=label, budget=None, width=int(width),
            target_params=float(n), target_tokens=float(tokens), param_kind='total',
            tokens=steps * base.train.batch_size * base.data.seq_len)))
  return generators.unique_labels(runs)
