"""Pretraining objectives at equal compute (issue 16): causal, mlm, span_corruption and
prefix_lm, each of `equal_compute.base()`: the same model, rows of 128 tokens, batch and steps,
so the same FLOPs (span corruption fills its rows with fewer tokens of text, MLM puts its loss on
15% of them). Each objective's own eval loss is over different targets; experiments.equal_compute
also scores every run as a causal LM on the same validation windows.

  python -m experiments.sweep --sweep=configs/sweeps/objectives.py --workdir=runs/equal/objectives
"""

import pathlib

from research.config import load_python_file
from research.sweeps import generators
from research.data import objectives

OBJECTIVES = ('causal', 'mlm', 'span_corruption', 'prefix_lm')


def get_sweep(num_steps: int | None = None, names=OBJECTIVES, overrides=()):
  shared = load_python_file(pathlib.Path(__file__).parents[1] / 'equal_compute.py')
  runs = []
  for name in names:
    c = shared.base(num_steps or shared.NUM_STEPS, overrides)
    c.train.objective = name
    objectives.check_objective(c.train)
    label = f'objective={name}'
    runs.append((label, generators.with_sweep(c, name='objectives', kind='equal_compute',
                                              label=label)))
  return runs
