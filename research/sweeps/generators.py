"""Sweep generators: plain functions from a base config to a list of (label, run config).

Every run config is a full copy of the base with its model shape and `train.num_steps` set, plus a
`sweep` section: name, kind, label (the run's name), budget (C, or None outside IsoFLOP sweeps),
target_params, target_tokens, param_kind ('total' | 'non_embedding') and tokens (D actually
trained: steps x batch x sequence). The cosine schedule always decays over exactly the run's own
steps, as Hoffmann et al. (2022, appendix B) found necessary: a cosine cycle much longer than the
run leaves the model under-trained.

Compute is C = 6 N D with N the TOTAL parameter count (embeddings included, as Chinchilla counts
them) for the IsoFLOP and compute-optimal sweeps; this is the N, D and C of the results table and of
the fits. The Kaplan sweeps target the non-embedding count, as Kaplan et al. (2020) do.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import ml_collections

from research.model import counting
from research.sweeps import sizing

Entry = tuple[str, ml_collections.ConfigDict]  # (label, run config): what get_sweep() returns
Allocation = Callable[[float], tuple[float, float]]  # C -> (N, D)


def short(x: float) -> str:
  """1234567 -> '1.23M': compact numbers for run names."""
  for scale, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(x) >= scale:
      return f'{x / scale:.3g}{suffix}'
  return f'{x:.3g}'


def sci(x: float) -> str:
  """3e+12 -> '3e12': a compute budget in run names."""
  return f'{x:.3g}'.replace('e+', 'e')


def with_sweep(config: ml_collections.ConfigDict, **meta) -> ml_collections.ConfigDict:
  """A copy of `config` with a `sweep` section holding `meta`."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.sweep = ml_collections.ConfigDict(meta)
  return config


def with_steps(config: ml_collections.ConfigDict, steps: int,
               max_warmup_fraction: float = 0.1) -> ml_collections.ConfigDict:
  """A copy that trains `steps` steps, the schedule decaying over exactly those steps.

  Warmup is the base's, capped at `max_warmup_fraction` of the run so short runs still decay.
  """
  if steps < 1:
    raise ValueError(f'train.num_steps={steps}: a run needs at least one step')
  config = config.copy_and_resolve_references()
  t = config.train
  t.num_steps = int(steps)
  t.warmup_steps = min(t.warmup_steps, int(max_warmup_fraction * steps))
  return config


def _tokens_per_step(config) -> int:
  return config.train.batch_size * config.data.seq_len


def run_entry(base, model, tokens, max_warmup_fraction, **meta) -> Entry:
  """One run of `model` on about `tokens` tokens (rounded to whole steps)."""
  steps = sizing.steps_for_tokens(tokens, base.train.batch_size, base.data.seq_len)
  config = with_steps(base, steps, max_warmup_fraction)
  config.model = model
  label = meta['label']
  return label, with_sweep(config, tokens=steps * _tokens_per_step(config), **meta)


def size_model(target: float, base: ml_collections.ConfigDict,
               shapes: Sequence[sizing.Shape] | None, aspect_ratio: float = 64.0,
               head_dim: int = 64) -> sizing.Sizing:
  """The model of about `target` total parameters: the nearest of `shapes`, or (None) a Kaplan
  shape at `aspect_ratio`."""
  if shapes is None:
    return sizing.kaplan_shape(target, base.model, kind='total', aspect_ratio=aspect_ratio,
                               head_dim=head_dim)
  return sizing.family_shape(target, base.model, shapes, kind='total')


def check_positive(name: str, values: Sequence[float]) -> None:
  """A ValueError naming `name` if `values` is empty or holds a value that is not > 0."""
  if not values:
    raise ValueError(f'{name}: needs at least one value')
  for v in values:
    if not v > 0:
      raise ValueError(f'{name}: {v!r} is not positive')


def kaplan_model_size_sweep(base: ml_collections.ConfigDict, params: Sequence[float],
                            tokens: float, *, name: str = 'kaplan_model_size',
                            aspect_ratio: float = 64.0, head_dim: int = 64,
                            max_warmup_fraction: float = 0.1) -> list[Entry]:
  """Kaplan's L(N): models of `params` non-embedding parameters, each trained on `tokens`."""
  check_positive('params', params)
  check_positive('tokens', [tokens])
  runs = []
  for target in params:
    size = sizing.kaplan_shape(target, base.model, aspect_ratio=aspect_ratio, head_dim=head_dim)
    label = f'N{short(size.counts.non_embedding)}-D{short(tokens)}'
    runs.append(run_entry(base, size.model, tokens, max_warmup_fraction, name=name,
                     kind='kaplan_model_size', label=label, budget=None,
                     target_params=float(target), target_tokens=float(tokens),
                     param_kind='non_embedding'))
  return unique_labels(runs)


def kaplan_data_size_sweep(base: ml_collections.ConfigDict, tokens: Sequence[float], *,
                           params: float | None = None, name: str = 'kaplan_data_size',
                           aspect_ratio: float = 64.0, head_dim: int = 64,
                           max_warmup_fraction: float = 0.1) -> list[Entry]:
  """Kaplan's L(D): one model (the base's, or sized to `params` non-embedding) on each `tokens`."""
  check_positive('tokens', tokens)
  model = base.model
  if params is not None:
    model = sizing.kaplan_shape(params, base.model, aspect_ratio=aspect_ratio,
                                head_dim=head_dim).model
  n = counting.predict_param_counts(model).non_embedding
  return unique_labels([
      run_entry(base, model, d, max_warmup_fraction, name=name, kind='kaplan_data_size',
           label=f'N{short(n)}-D{short(d)}', budget=None,
           target_params=float(params or n), target_tokens=float(d), param_kind='non_embedding')
      for d in tokens])


def chinchilla_guess(tokens_per_param: float = 20.0) -> Callable[[float], float]:
  """N_opt(C) for D = r N: N = sqrt(C / (6 r)); r = 20 is Hoffmann et al.'s rule of thumb."""
  if not tokens_per_param > 0:
    raise ValueError(f'tokens_per_param={tokens_per_param!r}: must be positive')
  return lambda c: math.sqrt(c / (6.0 * tokens_per_param))


def log_spaced_targets(center: float, num: int, span: float) -> list[float]:
  """`num` sizes log-spaced from center / sqrt(span) to center * sqrt(span) (one: the center)."""
  return [center * span ** (i / (num - 1) - 0.5 if num > 1 else 0.0) for i in range(num)]


def isoflop_sweep(base: ml_collections.ConfigDict, budgets: Sequence[float], *,
                  num_sizes: int = 7, span: float = 8.0,
                  guess: Callable[[float], float] | None = None,
                  shapes: Sequence[sizing.Shape] | None = None, aspect_ratio: float = 64.0,
                  head_dim: int = 64, min_steps: int = 10, name: str = 'isoflop',
                  max_warmup_fraction: float = 0.1) -> list[Entry]:
  """Chinchilla's approach 2: for each budget C, `num_sizes` models log-spaced around `guess(C)`.

  Sizes run from guess/sqrt(span) to guess*sqrt(span) (total parameters); each model is shaped by
  `sizing.kaplan_shape` (or the nearest of `shapes`) and trained on D = C / (6 N) tokens with N its
  exact total count, rounded to whole steps. Sizes that round to the same shape are kept once.
  """
  check_positive('budgets', budgets)
  if not 1 <= num_sizes <= 25:
    raise ValueError(f'num_sizes={num_sizes}: expected 1..25 (Chinchilla used 9)')
  if not span >= 1:
    raise ValueError(f'span={span!r}: the ratio of the largest to the smallest size, >= 1')
  guess = guess or chinchilla_guess()
  runs = []
  for budget in budgets:
    center = guess(budget)
    seen = set()
    for target in log_spaced_targets(center, num_sizes, span):
      size = size_model(target, base, shapes, aspect_ratio, head_dim)
      if size.shape in seen:
        continue
      seen.add(size.shape)
      n = size.counts.total
      tokens = sizing.tokens_for_flops(budget, n)
      steps = sizing.steps_for_tokens(tokens, base.train.batch_size, base.data.seq_len)
      if steps < min_steps:
        raise ValueError(f'budget C={budget:.3g}: the model of N={n:,} trains only {steps} steps '
                         f'(< min_steps={min_steps}); raise the budget, narrow span or shrink '
                         'train.batch_size')
      runs.append(run_entry(base, size.model, tokens, max_warmup_fraction, name=name, kind='isoflop',
                       label=f'C{sci(budget)}-N{short(n)}', budget=float(budget),
                       target_params=float(target), target_tokens=float(tokens),
                       param_kind='total'))
  return unique_labels(runs)


def power_law_allocation(a: float, n_coefficient: float, b: float | None = None,
                         d_coefficient: float | None = None) -> Allocation:
  """C -> (N, D) from a fitted law: N_opt = G_N C^a; D_opt = G_D C^b, or C / (6 N) if not given."""
  if (b is None) != (d_coefficient is None):
    raise ValueError('b and d_coefficient: give both (D_opt = d_coefficient * C^b) or neither')
  if not n_coefficient > 0 or (d_coefficient is not None and not d_coefficient > 0):
    raise ValueError(f'n_coefficient={n_coefficient!r}, d_coefficient={d_coefficient!r}: must be '
                     'positive')

  def allocate(c: float) -> tuple[float, float]:
    n = n_coefficient * c ** a
    return n, (d_coefficient * c ** b if b is not None else c / (6.0 * n))
  return allocate


def compute_optimal_ladder(base: ml_collections.ConfigDict, budgets: Sequence[float],
                           allocation: Allocation, *, shapes: Sequence[sizing.Shape] | None = None,
                           aspect_ratio: float = 64.0, head_dim: int = 64,
                           name: str = 'compute_optimal',
                           max_warmup_fraction: float = 0.1) -> list[Entry]:
  """One run per budget at the allocation's (N, D), N total parameters.

  The model is the nearest shape to N; D is then rescaled to keep the allocation's 6 N D, so each
  run spends its budget even though the shape's count is not exactly N.
  """
  check_positive('budgets', budgets)
  runs = []
  for budget in budgets:
    n_target, d_target = allocation(budget)
    check_positive(f'allocation({budget:.3g})', [n_target, d_target])
    size = size_model(n_target, base, shapes, aspect_ratio, head_dim)
    n = size.counts.total
    tokens = d_target * n_target / n
    runs.append(run_entry(base, size.model, tokens, max_warmup_fraction, name=name,
                     kind='compute_optimal', label=f'C{sci(budget)}-N{short(n)}',
                     budget=float(budget), target_params=float(n_target),
                     target_tokens=float(d_target), param_kind='total'))
  return unique_labels(runs)


def unique_labels(runs: list[Entry]) -> list[Entry]:
  """`runs`, or a ValueError listing the labels that repeat."""
  names = [n for n, _ in runs]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(f'run names must be unique within a sweep; repeated: {duplicates}')
  return runs
