"""Data-constrained sweeps (Muennighoff et al. 2023): models trained for several epochs over a
fixed number of unique tokens (`data.unique_tokens`), for the effective-data law.

Pair them with fresh-data runs of the same models (an IsoFLOP or Kaplan sweep) so the fit can
take the Chinchilla law from those and R* from these. `fresh_controls=True` adds, for each repeated
run, one of the same model and steps on fresh data, so the law also covers the repeated runs'
token counts (a law fitted on larger D extrapolates badly to the few tokens of a small U).
"""

from __future__ import annotations

import math
from typing import Sequence

import ml_collections

from research.sweeps import generators
from research.sweeps import sizing


def data_constrained_sweep(base: ml_collections.ConfigDict, params: Sequence[float],
                           unique_tokens: Sequence[float], epochs: Sequence[float], *,
                           shapes: Sequence[sizing.Shape] | None = None,
                           aspect_ratio: float = 64.0, head_dim: int = 64,
                           name: str = 'data_constrained', fresh_controls: bool = False,
                           max_warmup_fraction: float = 0.1) -> list[generators.Entry]:
  """For each model of about `params` total parameters and each U in `unique_tokens`, one run
  per number of `epochs` (each > 1: repetitions below one epoch are refused) over U tokens.

  U is rounded down to whole windows of `data.seq_len`; steps are rounded up so each run trains
  at least `epochs` x U tokens, its cosine schedule decaying over exactly its own steps. With
  `fresh_controls`, each distinct (model, steps) also gets a run on fresh data (label suffix
  '-fresh', `sweep.kind` 'data_constrained_control', no unique-token limit): the same tokens seen,
  none repeated.
  """
  generators.check_positive('params', params)
  generators.check_positive('unique_tokens', unique_tokens)
  generators.check_positive('epochs', epochs)
  for e in epochs:
    if e <= 1:
      raise ValueError(f'epochs: {e!r} is not above one epoch; a data-constrained run repeats its '
                       'unique tokens (train fresh-data runs with another sweep)')
  per_step = base.train.batch_size * base.data.seq_len
  runs = []
  for target in params:
    size = generators.size_model(target, base, shapes, aspect_ratio, head_dim)
    n = size.counts.total
    controls = set()  # the step counts this model already has a fresh run for
    for u in unique_tokens:
      u = int(u) // base.data.seq_len * base.data.seq_len
      if u < per_step:
        raise ValueError(f'unique_tokens: {u:,} tokens is less than one batch of {per_step:,}')
      for e in epochs:
        steps = math.ceil(e * u / per_step)
        config = generators.with_steps(base, steps, max_warmup_fraction)
        config.model = size.model
        config.data.unique_tokens = u
        label = f'N{generators.short(n)}-U{generators.short(u)}-x{e:g}'
        runs.append((label, generators.with_sweep(
            config, name=name, kind='data_constrained', label=label, budget=None,
            target_params=float(target), target_tokens=float(e * u), param_kind='total',
            tokens=steps * per_step, unique_tokens=u, epochs=steps * per_step / u)))
        if fresh_controls and steps not in controls:
          controls.add(steps)
          runs.append(_fresh_control(base, size, target, steps, max_warmup_fraction, name))
  return generators.unique_labels(runs)


def _fresh_control(base, size: sizing.Sizing, target: float, steps: int,
                   max_warmup_fraction: float, name: str) -> generators.Entry:
  """The run of `size` for `steps` steps on fresh data: a repeated run's control."""
  tokens = steps * base.train.batch_size * base.data.seq_len
  config = generators.with_steps(base, steps, max_warmup_fraction)
  config.model = size.model
  config.data.unique_tokens = 0
  label = f'N{generators.short(size.counts.total)}-D{generators.short(tokens)}-fresh'
  return label, generators.with_sweep(
      config, name=name, kind='data_constrained_control', label=label, budget=None,
      target_params=float(target), target_tokens=float(tokens), param_kind='total', tokens=tokens)
