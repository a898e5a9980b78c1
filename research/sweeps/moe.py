"""MoE against dense at equal compute: per budget, a dense model and MoE models of the same shape
whose tokens use as many parameters (so FLOPs per token), all trained on the same tokens.

An MoE variant (E, k) gives every layer E routed experts of width d_ff / k, top-k: a token's k
experts hold exactly the dense feed-forward's weights, plus a router of d_model x E per layer. So
active parameters equal the dense count up to the routers, total parameters grow about E / k-fold
in the feed-forward. Every run of a budget trains D = C / (6 N) tokens, N the dense model's
(total = active) count; the results table reports N = active parameters for each run (its C is
6 N_active D, the budget up to the routers' share), with N_total and num_experts beside it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ml_collections

from research.model import counting
from research.sweeps import generators
from research.sweeps import sizing

KIND = 'moe_vs_dense'  # sweep.kind of every run, dense ones included


def moe_variant(model: ml_collections.ConfigDict, num_experts: int,
                experts_per_token: int) -> ml_collections.ConfigDict:
  """`model` with every layer MoE: `num_experts` experts of width d_ff / k, top-k, dropless."""
  if not 1 <= experts_per_token <= num_experts:
    raise ValueError(f'experts=({num_experts}, {experts_per_token}): needs 1 <= k <= E')
  if model.d_ff % experts_per_token:
    raise ValueError(f'experts=({num_experts}, {experts_per_token}): model.d_ff={model.d_ff} '
                     f'does not split into {experts_per_token} experts per token')
  model = model.copy_and_resolve_references()
  model.update(num_experts=num_experts, experts_per_token=experts_per_token,
               moe_d_ff=model.d_ff // experts_per_token, moe_every=1, num_shared_experts=0,
               expert_capacity_factor=0.0)
  return model


def moe_sweep(base: ml_collections.ConfigDict, budgets: Sequence[float],
              experts: Sequence[tuple[int, int]], *, guess: Callable[[float], float],
              shapes: Sequence[sizing.Shape], name: str = 'moe', min_steps: int = 10,
              max_warmup_fraction: float = 0.1) -> list[generators.Entry]:
  """For each budget C: the dense model of the `shapes` nearest `guess(C)` total parameters, and
  for each (E, k) of `experts` its MoE variant (`moe_variant`), all on D = C / (6 N_dense)."""
  generators.check_positive('budgets', budgets)
  if not experts:
    raise ValueError('experts: needs at least one (num_experts, experts_per_token) pair')
  runs = []
  for budget in budgets:
    dense = generators.size_model(guess(budget), base, shapes)
    n = dense.counts.total
    tokens = sizing.tokens_for_flops(budget, n)
    steps = sizing.steps_for_tokens(tokens, base.train.batch_size, base.data.seq_len)
    if steps < min_steps:
      raise ValueError(f'budget C={budget:.3g}: the dense model of N={n:,} trains only {steps} '
                       f'steps (< min_steps={min_steps}); raise the budget')
    models = [('dense', dense.model)] + [
        (f'E{e}k{k}', moe_variant(dense.model, e, k)) for e, k in experts]
    for variant, model in models:
      active = counting.predict_param_counts(model, active=True).total
      label = f'C{generators.sci(budget)}-{variant}-N{generators.short(active)}'
      runs.append(generators.run_entry(
          base, model, tokens, max_warmup_fraction, name=name, kind=KIND, label=label,
          budget=float(budget), target_params=float(n), target_tokens=float(tokens),
          param_kind='active', variant=variant))
  return generators.unique_labels(runs)
