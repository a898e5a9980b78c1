"""Hyperparameter sweeps: learning rate and batch size per compute budget, for the laws of their
optima against compute (DeepSeek LLM 2024, section 3.1; Porian et al. 2024).

Each budget C trains one model, of about `guess(C)` parameters, on D = C / (6 N) tokens, at every
(learning rate, batch size) of the grid: the batch size changes the steps, not the tokens, so
every run of a budget spends the same compute. Runs carry `sweep.kind = 'hyperparameter'`, which
keeps them out of the Chinchilla fits and in the learning-rate and batch-size laws.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ml_collections

from research.sweeps import generators
from research.sweeps import sizing

KIND = 'hyperparameter'


def hyperparameter_sweep(base: ml_collections.ConfigDict, budgets: Sequence[float],
                         learning_rates: Sequence[float], batch_sizes: Sequence[int] | None = None,
                         *, guess: Callable[[float], float] | None = None,
                         shapes: Sequence[sizing.Shape] | None = None,
                         aspect_ratio: float = 64.0, head_dim: int = 64, min_steps: int = 20,
                         name: str = 'hyperparameters',
                         max_warmup_fraction: float = 0.1) -> list[generators.Entry]:
  """The grid `learning_rates` x `batch_sizes` (sequences per step; default the base's) at each
  budget. Warmup is the base's, capped at `max_warmup_fraction` of each run."""
  generators.check_positive('budgets', budgets)
  generators.check_positive('learning_rates', learning_rates)
  batch_sizes = list(batch_sizes or [base.train.batch_size])
  generators.check_positive('batch_sizes', batch_sizes)
  guess = guess or generators.chinchilla_guess()
  runs = []
  for budget in budgets:
    size = generators.size_model(guess(budget), base, shapes, aspect_ratio, head_dim)
    n = size.counts.total
    tokens = sizing.tokens_for_flops(budget, n)
    for batch in batch_sizes:
      steps = sizing.steps_for_tokens(tokens, int(batch), base.data.seq_len)
      if steps < min_steps:
        raise ValueError(f'budget C={budget:.3g}: batch {batch} trains the model of N={n:,} only '
                         f'{steps} steps (< min_steps={min_steps}); raise the budget or lower '
                         'the batch sizes')
      for lr in learning_rates:
        config = base.copy_and_resolve_references()
        config.train.batch_size = int(batch)
        config = generators.with_steps(config, steps, max_warmup_fraction)
        config.model = size.model
        config.train.learning_rate = float(lr)
        label = f'C{generators.sci(budget)}-N{generators.short(n)}-B{batch}-lr{lr:.3g}'
        runs.append((label, generators.with_sweep(
            config, name=name, kind=KIND, label=label, budget=float(budget),
            target_params=float(guess(budget)), target_tokens=float(tokens), param_kind='total',
            tokens=steps * int(batch) * base.data.seq_len)))
  return generators.unique_labels(runs)
