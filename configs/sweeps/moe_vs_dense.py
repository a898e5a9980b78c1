"""Mixture of Experts against the dense model of equal active FLOPs (issue 15): configs/tiny.py's
shape (d_model 128, 4 layers, GELU MLP of d_ff 512) as the dense model; the same model with every
feed-forward replaced by 8 experts of width 256, top-2, so each token's feed-forward FLOPs equal
the dense one's (plus a 128 x 8 router); trained with and without the load-balancing loss. Same
batch, steps and tokens for all three (`equal_compute.base()`), evaluated every 100 steps.

  python -m experiments.moe_vs_dense --workdir=runs/moe_vs_dense
  python -m experiments.sweep --sweep=configs/sweeps/moe_vs_dense.py --workdir=runs/moe_vs_dense
"""

import pathlib

from research.config import load_python_file
from research.sweeps import generators
from research.sweeps import moe

NUM_STEPS = 600
EXPERTS, TOP_K = 8, 2
VARIANTS = {  # label: (MoE or dense, model fields over that)
    'dense': (False, {}),
    'moe': (True, {}),
    'moe_no_balance_loss': (True, dict(load_balance_loss_weight=0.0)),
}


def get_sweep(num_steps: int | None = None, labels=tuple(VARIANTS), overrides=()):
  shared = load_python_file(pathlib.Path(__file__).parents[1] / 'equal_compute.py')
  runs = []
  for label in labels:
    if label not in VARIANTS:
      raise ValueError(f'label {label!r}: expected one of {tuple(VARIANTS)}')
    c = shared.base(num_steps or NUM_STEPS, overrides)
    c.train.eval_every = 100
    is_moe, fields = VARIANTS[label]
    if is_moe:  # experts of width d_ff / k: k of them cost one dense feed-forward
      c.model = moe.moe_variant(c.model, EXPERTS, TOP_K)
    c.model.update(fields)
    runs.append((label, generators.with_sweep(c, name='moe_vs_dense', kind='moe_vs_dense',
                                              label=label)))
  return runs
