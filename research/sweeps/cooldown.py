"""Warmup-stable-decay sweeps (Hagele et al. 2024): one constant-learning-rate run per model size,
and from its checkpoints one cooldown branch per budget.

The (N, D) points are exactly those of `generators.isoflop_sweep` with the same arguments, so the
law fitted from the branches can be set beside the law of separate cosine runs. For a size with
runs of S_1 < S_2 < ... steps, the constant run trains to the last branch point and keeps a
checkpoint at each S_i - k_i (k_i = round(fraction x S_i) cooldown steps); branch i starts there
and decays linearly or as 1 - sqrt to the floor over k_i steps, ending after S_i steps. Branches
are their own run directories (`train.init_from` names the parent, so their identity includes it)
and their own rows of the results table, labelled with their budget for Approach 2; the constant
runs (`sweep.kind = 'wsd_stable'`) are not fitted. The compute is the constant runs' plus each
branch's cooldown: about (1 - fraction) S_max + fraction sum S_i steps per size instead of
sum S_i.
"""

from __future__ import annotations

import json
from typing import Sequence

import ml_collections

from research.sweeps import generators

STABLE_KIND = 'wsd_stable'  # the constant-learning-rate runs: parents, not measurements
BRANCH_KIND = 'cooldown'
DECAY_SHAPES = ('linear', '1-sqrt')


def cooldown_sweep(base: ml_collections.ConfigDict, budgets: Sequence[float], *,
                   fraction: float = 0.2, decay_shape: str = 'linear',
                   name: str = 'cooldown', **isoflop_kwargs) -> list[generators.Entry]:
  """Constant runs and their cooldown branches at the (N, D) of `isoflop_sweep(base, budgets,
  **isoflop_kwargs)`; each branch cools down over `fraction` of its steps."""
  if not 0 < fraction < 1:
    raise ValueError(f'fraction={fraction!r}: the cooldown must be a share of the run in (0, 1)')
  if decay_shape not in DECAY_SHAPES:
    raise ValueError(f'decay_shape={decay_shape!r}: expected one of {DECAY_SHAPES}')
  cosine = generators.isoflop_sweep(base, budgets, name=name, **isoflop_kwargs)
  by_model = {}
  for _, config in cosine:
    by_model.setdefault(json.dumps(config.model.to_dict(), sort_keys=True), []).append(config)
  runs = []
  for members in by_model.values():
    members.sort(key=lambda c: c.train.num_steps)
    warmup = min(c.train.warmup_steps for c in members)
    starts = []
    for config in members:
      steps = config.train.num_steps
      cooldown = max(1, round(fraction * steps))
      if steps - cooldown <= warmup:
        raise ValueError(f'budget C={config.sweep.budget:.3g}: the run of {steps} steps would '
                         f'start its cooldown of {cooldown} within the warmup ({warmup} steps); '
                         'lower the fraction or train.warmup_steps')
      starts.append(steps - cooldown)
    parent_label = members[0].sweep.label.split('-', 1)[1] + '-constant'
    parent = members[0].copy_and_resolve_references()
    parent.train.update(schedule='constant', num_steps=max(starts), warmup_steps=warmup,
                        save_steps=tuple(sorted(set(starts))))
    parent.sweep.update(kind=STABLE_KIND, label=parent_label, budget=None,
                        tokens=max(starts) * base.train.batch_size * base.data.seq_len)
    runs.append((parent_label, parent))
    for config, start in zip(members, starts):
      branch = config.copy_and_resolve_references()
      steps = branch.train.num_steps
      branch.train.update(schedule='wsd', warmup_steps=warmup, decay_shape=decay_shape,
                          decay_fraction=(steps - start) / steps)
      branch.train.init_from.step = start
      label = f'{config.sweep.label}-cooldown'
      with branch.unlocked():
        branch.sweep.update(kind=BRANCH_KIND, label=label, parent=parent_label)
      runs.append((label, branch))
  return generators.unique_labels(runs)
