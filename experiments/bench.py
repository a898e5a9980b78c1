"""Time the real train step of a config and report tokens/s and MFU against a measured peak.

`python -m experiments.bench --config=configs/bench_cpu.py [--config.x=y] [--steps=20]
[--warmup=3] [--profile=DIR] [--loop_steps=N]` compiles the same sharded train step training uses
(optimizer update included), feeds it random tokens, and times `--steps` steps after warm-up. The
device's peak is measured in the same run, before and after the timed steps (float32 matmul on
CPU, bfloat16 on accelerators; the faster of the two counts). MFU uses the PaLM convention:
6 x matmul weights + 12 x layers x d_attn x context FLOPs per token. `--loop_steps` then runs the
training loop itself (real data, metrics, guards) for that many steps and compares its tokens/s
with the step's. The last line printed is one JSON object.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import copy
import json
import pathlib
import statistics
import sys
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments.timing import random_batches
from research.model import counting
from research.model.config import resolve_dtype
from research.parallel import sharding as sharding_lib
from research.parallel.mesh import make_mesh
from research.parallel.rules import as_rules
from research.run_dir import read_metrics
from research.train.loop import train
from research.train.mfu import datasheet_peak, measure_peak_flops
from research.train.program import build_program
from research.train.validate import validate_config

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
_PROFILE = flags.DEFINE_string('profile', '', 'Write a jax.profiler trace of 3 steps here.')
_LOOP_STEPS = flags.DEFINE_integer('loop_steps', 0, 'Also train this many steps with the real '
                                   'loop on the config\'s data and compare its tokens/s.')
flags.mark_flag_as_required('config')


def bench(config, steps: int, warmup: int, profile_dir: str = '') -> dict:
  """Median step time of the compiled train step, and the figures derived from it."""
  validate_config(config)
  mesh, rules = make_mesh(config.mesh), as_rules(config.mesh.rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    program = build_program(config, mesh, rules)
    state = program.init_state()
    batches = [sharding_lib.global_batch(b, program.batch_sharding)
               for b in random_batches(config, 4)]
    start = time.perf_counter()
    state, metrics = program.train_step(state, batches[0])
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    peak_before = measure_peak_flops()
    for i in range(warmup):
      state, metrics = program.train_step(state, batches[i % len(batches)])
    jax.block_until_ready(metrics)
    times = []
    for i in range(steps):
      start = time.perf_counter()
      state, metrics = program.train_step(state, batches[i % len(batches)])
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    if profile_dir:
      with jax.profiler.trace(profile_dir):
        for i in range(3):
          state, metrics = program.train_step(state, batches[i % len(batches)])
        jax.block_until_ready(metrics)
  peak = max(peak_before, measure_peak_flops())
  step_time = statistics.median(times)
  tokens_per_step = config.train.batch_size * config.data.seq_len
  flops_per_token = counting.palm_flops_per_token(config.model, config.data.seq_len)
  tokens_per_sec = tokens_per_step / step_time
  device = jax.devices()[0]
  return {
      'device': f'{device.platform}:{device.device_kind} x{jax.device_count()}',
      'dtype': str(np.dtype(resolve_dtype(config.model.dtype))),
      'params_total': counting.predict_param_counts(config.model).total,
      'tokens_per_step': tokens_per_step,
      'compile_s': compile_s,
      'step_time_s': step_time,
      'step_time_min_s': min(times),
      'step_time_max_s': max(times),
      'step_time_mean_s': statistics.mean(times),
      'tokens_per_sec': tokens_per_sec,
      'model_flops_per_token': flops_per_token,
      'peak_flops': peak * jax.device_count(),
      'datasheet_peak_flops': datasheet_peak(),
      'mfu': tokens_per_sec * flops_per_token / (peak * jax.device_count()),
      'final_loss': float(metrics['loss']),
  }


def loop_step_times(config, steps: int, skip: int) -> list[float]:
  """Per-step wall times of the training loop on the config's data, after the first `skip` steps.

  A throwaway run directory; metrics every step, evaluation and a checkpoint only at the end.
  """
  config = copy.deepcopy(config)
  config.train.update(num_steps=steps, log_every=1, eval_every=steps, checkpoint_every=steps)
  with tempfile.TemporaryDirectory() as tmp:
    workdir = pathlib.Path(tmp) / 'run'
    train(config, workdir, log=lambda *_: None)
    _, step_times = read_metrics(workdir, 'step_time_s')
  return list(step_times[skip:])


def main(argv):
  del argv
  try:
    r = bench(_CONFIG.value, _STEPS.value, _WARMUP.value, _PROFILE.value)
    if _LOOP_STEPS.value:
      times = loop_step_times(_CONFIG.value, _LOOP_STEPS.value + _WARMUP.value + 1,
                              skip=_WARMUP.value + 1)
      r['loop_step_time_s'] = statistics.median(times)
      r['loop_step_time_mean_s'] = statistics.mean(times)
      r['loop_tokens_per_sec'] = r['tokens_per_step'] / r['loop_step_time_s']
      r['loop_vs_bench'] = r['loop_tokens_per_sec'] / r['tokens_per_sec']
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  rows = [('device', r['device']), ('compute dtype', r['dtype']),
          ('parameters', f'{r["params_total"]:,}'), ('tokens / step', f'{r["tokens_per_step"]:,}'),
          ('compile', f'{r["compile_s"]:.1f} s'),
          ('step time (median)', f'{r["step_time_s"] * 1e3:.1f} ms '
           f'[{r["step_time_min_s"] * 1e3:.1f}, {r["step_time_max_s"] * 1e3:.1f}]'),
          ('tokens / s', f'{r["tokens_per_sec"]:,.0f}'),
          ('model FLOPs / token', f'{r["model_flops_per_token"]:,} (PaLM)'),
          ('measured peak', f'{r["peak_flops"] / 1e12:.3f} TFLOP/s'),
          ('datasheet peak', f'{r["datasheet_peak_flops"] / 1e12:.0f} TFLOP/s'
           if r['datasheet_peak_flops'] else 'unknown'),
          ('MFU', f'{100 * r["mfu"]:.1f} %')]
  if 'loop_tokens_per_sec' in r:
    rows += [('loop step (median)', f'{r["loop_step_time_s"] * 1e3:.1f} ms '
              f'(mean {r["loop_step_time_mean_s"] * 1e3:.1f}; bench mean '
              f'{r["step_time_mean_s"] * 1e3:.1f})'),
             ('loop tokens / s', f'{r["loop_tokens_per_sec"]:,.0f} '
              f'({100 * r["loop_vs_bench"]:.1f} % of the bench figure)')]
  for name, value in rows:
    print(f'{name:<22} {value}')
  print(json.dumps(r))


if __name__ == '__main__':
  app.run(main)
