"""A/B of one config field on the real train step, both programs in one process, steps alternated.

`python -m experiments.bench_compare --config=configs/bench_cpu.py
--field=model.attention_impl --values=xla,query_blocks [--steps=12] [--warmup=2]` compiles the
train step once per value, then times them in rounds, one step of each per round (the order
reversed every other round), on the same random batches. It prints each value's median step time
and the median over rounds of its step time divided by the first value's in the same round: on a
shared machine whose speed drifts from minute to minute, that paired ratio is what separates a
change from the drift, where medians from separate runs do not. The last line printed is one
JSON object.
"""

from __future__ import annotations

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()

import copy
import json
import statistics
import sys
import time

import flax.linen as nn
import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments.timing import random_batches
from research.config import set_field
from research.parallel import sharding as sharding_lib
from research.parallel.mesh import make_mesh
from research.parallel.rules import as_rules
from research.train.program import build_program
from research.train.validate import validate_config

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.')
_FIELD = flags.DEFINE_string('field', None, "The config field to vary, e.g. 'model.attention_impl'.")
_VALUES = flags.DEFINE_list('values', None, 'Its values, the first being the baseline.')
_STEPS = flags.DEFINE_integer('steps', 12, 'Timed rounds (one step of each value per round).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps of each value after compilation.')
flags.mark_flags_as_required(['config', 'field', 'values'])


def with_value(config, field: str, text: str):
  """A copy of `config` with `field` (dotted) set to `text` (read by research.config.set_field)."""
  if field.split('.')[0] in ('mesh', 'distributed'):
    raise ValueError(f'--field={field}: every program here shares one mesh; compare mesh '
                     'layouts with separate runs of experiments.bench')
  config = copy.deepcopy(config)
  try:
    set_field(config, field, text)
  except ValueError as e:
    raise ValueError(f'--field={field} --values: {e}') from None
  validate_config(config)
  return config


def compare(config, field: str, values: list[str], steps: int, warmup: int) -> list[dict]:
  """Per value: median, min and max step time (s), the median paired ratio to the first value,
  and the loss after the last timed step (every value trains on the same batches)."""
  if len(values) < 2:
    raise ValueError(f'--values={",".join(values)}: give at least two values to compare')
  configs = [with_value(config, field, v) for v in values]
  mesh, rules = make_mesh(config.mesh), as_rules(config.mesh.rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    programs, states, batches = [], [], []
    for c in configs:
      program = build_program(c, mesh, rules)
      state = program.init_state()
      batches.append([sharding_lib.global_batch(b, program.batch_sharding)
                      for b in random_batches(c, 4)])
      for i in range(warmup + 1):  # the first call compiles
        state, metrics = program.train_step(state, batches[-1][i % 4])
      jax.block_until_ready(metrics)
      programs.append(program)
      states.append(state)
    times = [[] for _ in configs]
    losses = [None] * len(configs)
    for r in range(steps):
      order = range(len(configs)) if r % 2 == 0 else reversed(range(len(configs)))
      for j in order:
        start = time.perf_counter()
        states[j], metrics = programs[j].train_step(states[j], batches[j][r % 4])
        jax.block_until_ready(metrics)
        times[j].append(time.perf_counter() - start)
        losses[j] = float(metrics['loss'])
  return [{'value': v, 'step_time_s': statistics.median(t), 'step_time_min_s': min(t),
           'step_time_max_s': max(t),
           'ratio_to_first': statistics.median(a / b for a, b in zip(t, times[0])),
           'final_loss': loss}
          for v, t, loss in zip(values, times, losses)]


def main(argv):
  del argv
  try:
    rows = compare(_CONFIG.value, _FIELD.value, _VALUES.value, _STEPS.value, _WARMUP.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'{_FIELD.value:<24} {"step (median)":>14} {"[min, max]":>20} {"paired ratio":>13} '
        f'{"final loss":>11}')
  for r in rows:
    spread = f'[{r["step_time_min_s"] * 1e3:.1f}, {r["step_time_max_s"] * 1e3:.1f}]'
    print(f'{r["value"]:<24} {r["step_time_s"] * 1e3:>11.1f} ms {spread:>20} '
          f'{r["ratio_to_first"]:>13.3f} {r["final_loss"]:>11.4f}')
  print(json.dumps({'field': _FIELD.value, 'steps': _STEPS.value, 'rows': rows}))


if __name__ == '__main__':
  app.run(main)
