"""Ahead-of-time memory report: compile the real train step for a mesh without allocating it.

`python -m experiments.compile --config=configs/llama_1b.py --mesh=1,8,1 [--devices=8]` lowers and
compiles the sharded train step from abstract shapes and prints, per device, the parameter and
optimizer-state bytes (from the shardings) and XLA's memory analysis (arguments, outputs,
temporaries), plus the model FLOPs per step. `--devices=N` fakes N CPU devices. A mesh with a
'stage' axis above 1 also gets its pipeline schedule and bubble: the share of (stage, iteration)
slots the schedule leaves idle, counted slot by slot, next to the theory (S-1)/(R M + S-1).
The last line is one JSON object with the same figures.
"""

import os
import sys


def _fake_devices_from_argv(argv) -> None:
  """--devices must take effect before JAX starts, so it is read before the import."""
  for arg in argv:
    if arg.startswith('--devices='):
      count = int(arg.split('=', 1)[1])
      os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                                 f' --xla_force_host_platform_device_count={count}')
      os.environ.setdefault('JAX_PLATFORMS', 'cpu')


_fake_devices_from_argv(sys.argv)

import json  # noqa: E402
import math  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from research.model import counting  # noqa: E402
from research.model import pipeline as pipeline_lib  # noqa: E402
from research.parallel.mesh import make_mesh  # noqa: E402
from research.parallel.rules import as_rules  # noqa: E402
from research.train.pipelining import pipeline_schedule  # noqa: E402
from research.train.program import build_program  # noqa: E402
from research.train.validate import validate_config  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.')
_MESH = flags.DEFINE_string('mesh', None, 'ICI mesh shape data,fsdp,tensor or '
                             'data,stage,fsdp,expert,tensor (default: the config).')
flags.DEFINE_integer('devices', None, 'Fake this many CPU devices (read before JAX starts).')
flags.mark_flag_as_required('config')


def sharded_bytes(abstract_tree) -> int:
  """Bytes one device holds of a tree of sharded ShapeDtypeStructs."""
  total = 0
  for leaf in jax.tree.leaves(abstract_tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * jnp.dtype(leaf.dtype).itemsize
  return total


def report(config) -> dict:
  """Compile the train step for `config.mesh` from abstract values and collect the figures."""
  validate_config(config)
  mesh, rules = make_mesh(config.mesh), as_rules(config.mesh.rules)
  m, t = config.model, config.train
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    program = build_program(config, mesh, rules)
    abstract = program.abstract_state()
    batch = program.abstract_batch(t.batch_size, config.data.seq_len)
    compiled = program.train_step.lower(abstract, batch).compile()
  memory = compiled.memory_analysis()
  counts = counting.predict_param_counts(m)
  tokens_per_step = t.batch_size * config.data.seq_len
  figures = {
      'devices': mesh.devices.size,
      'mesh': dict(zip(mesh.axis_names, mesh.devices.shape)),
      'params_total': counts.total,
      'param_bytes_per_device': sharded_bytes(abstract.params),
      'optimizer_bytes_per_device': sharded_bytes(abstract.opt_state),
      'argument_bytes': memory.argument_size_in_bytes,
      'output_bytes': memory.output_size_in_bytes,
      'alias_bytes': memory.alias_size_in_bytes,
      'temp_bytes': memory.temp_size_in_bytes,
      'model_flops_per_step': counting.palm_flops_per_token(m, config.data.seq_len) *
                              tokens_per_step,
      'tokens_per_step': tokens_per_step,
  }
  schedule = pipeline_schedule(t, mesh.shape['stage'])
  if schedule is not None:
    figures['pipeline'] = {
        'schedule': t.pipeline_schedule, 'stages': schedule.num_stages,
        'microbatches': schedule.num_microbatches, 'repeats': schedule.num_repeats,
        'iterations': schedule.num_iterations,
        'bubble_fraction': pipeline_lib.bubble_fraction(schedule),
        'bubble_theory': pipeline_lib.theoretical_bubble(schedule)}
  return figures


def main(argv):
  del argv
  config = _CONFIG.value
  if _MESH.value:
    config.mesh.ici = tuple(int(x) for x in _MESH.value.split(','))
  try:
    figures = report(config)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  gib = lambda b: f'{b / 2**30:.3f} GiB'
  print(f'mesh {figures["mesh"]} over {figures["devices"]} devices; '
        f'{figures["params_total"]:,} parameters')
  print('per device:')
  print(f'  parameters        {gib(figures["param_bytes_per_device"])}')
  print(f'  optimizer state   {gib(figures["optimizer_bytes_per_device"])}')
  print(f'  XLA arguments     {gib(figures["argument_bytes"])}  (donated into outputs: '
        f'{gib(figures["alias_bytes"])})')
  print(f'  XLA temporaries   {gib(figures["temp_bytes"])}  (activations and workspace)')
  peak = figures['argument_bytes'] + figures['output_bytes'] - figures['alias_bytes'] + \
      figures['temp_bytes']
  print(f'  total (peak est.) {gib(peak)}')
  print(f'model FLOPs per step (PaLM convention): {figures["model_flops_per_step"]:.3e}')
  if 'pipeline' in figures:
    p = figures['pipeline']
    print(f'pipeline {p["schedule"]}: {p["stages"]} stages x {p["microbatches"]} microbatches, '
          f'{p["repeats"]} chunk(s) per stage, {p["iterations"]} iterations; bubble '
          f'{p["bubble_fraction"]:.3f} (theory (S-1)/(R M + S-1) = {p["bubble_theory"]:.3f})')
  print(json.dumps(figures))


if __name__ == '__main__':
  app.run(main)
