"""Before running a new IsoFLOP design, simulate how wide a's 95% interval will be and how long the
design takes, from a sweep already run (research/sweeps/design_simulation.py):

  python -m experiments.isoflop_design --workdir=runs/quickstart --num_sizes=6,7 --spans=4,5 \
      --rises=0.06,0.08 --approach3

Per budget of the workdir's IsoFLOP runs, the truth is a cubic in log N through its runs and the
designs are centred on its parabola minimum; `--spans` are the same factor at every budget,
`--rises` set each budget's span so its ends sit that many nats above its minimum. Sizes are the
shape family's (`--shapes`) with the sweep's model settings. Times come from the workdir's own runs
(fixed cost per run and per-step cost, on `--lanes` concurrent runs). The first row is the
design as run.
"""

import datetime

import ml_collections
import numpy as np
from absl import app
from absl import flags

from research import run_dir as run_dir_lib
from research.model import counting
from research.scaling import chinchilla
from research.sweeps import design_simulation as sim
from research.sweeps import sizing
from research.sweeps import table

SHAPES = {'fine_two_layer': sizing.FINE_TWO_LAYER_SHAPES, 'two_layer': sizing.TWO_LAYER_SHAPES,
          'tiny': sizing.TINY_SHAPES}
_WORKDIR = flags.DEFINE_string('workdir', None, 'A sweep directory with completed IsoFLOP runs.')
_SHAPES = flags.DEFINE_enum('shapes', 'fine_two_layer', list(SHAPES), 'The sizes on offer.')
_NUM_SIZES = flags.DEFINE_list('num_sizes', ['6', '7'], 'Sizes per budget.')
_SPANS = flags.DEFINE_list('spans', ['5'], 'Largest / smallest size, the same at every budget.')
_RISES = flags.DEFINE_list('rises', ['0.06'], 'Per-budget spans whose ends rise this many nats.')
_NOISE = flags.DEFINE_float('noise', 0.003, 'Std dev of the loss noise added to the truth.')
_REPLICATES = flags.DEFINE_integer('replicates', 6, 'Noisy draws per design.')
_N_BOOTSTRAP = flags.DEFINE_integer('n_bootstrap', 200, 'Bootstrap replicates per fit.')
_APPROACH3 = flags.DEFINE_bool('approach3', False, 'Also simulate Approach 3 (slower).')
_LANES = flags.DEFINE_integer('lanes', 2, 'Runs at once (the sweep\'s --max_concurrent).')
flags.mark_flag_as_required('workdir')


def process_seconds(run_dir) -> float:
  """Start to end of a run's process, from the runner's record."""
  record = run_dir_lib.read_json(run_dir_lib.as_path(run_dir) / run_dir_lib.RUNNER_FILE)
  start, end = (datetime.datetime.fromisoformat(record[k]) for k in ('started', 'ended'))
  return (end - start).total_seconds()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  rows = table.load_results(_WORKDIR.value)
  isoflop = np.isfinite(rows['budget'])
  if not isoflop.any():
    raise app.UsageError(f'{_WORKDIR.value}: no completed run carries an IsoFLOP budget')
  N, loss, C, steps = (rows[k][isoflop] for k in ('N', 'final_eval_loss', 'budget', 'step'))
  D = rows['D'][isoflop]
  run_dirs = rows['run_dir'][isoflop]
  config = run_dir_lib.read_config(run_dirs[0])
  base_model = ml_collections.ConfigDict(config['model'])
  sizes = sorted({counting.predict_param_counts(sizing.apply_shape(base_model, s)).total
                  for s in SHAPES[_SHAPES.value]})
  tokens_per_step = config['train']['batch_size'] * config['data']['seq_len']
  costs = sim.run_costs(N, steps, rows['wall_time_s'][isoflop],
                        [process_seconds(d) for d in run_dirs])
  truths = sim.profile_truths(N, loss, C)
  measured = chinchilla.fit_isoflop(N, D, loss, C, keep_extrapolated=True, n_bootstrap=0)
  centres = dict(zip(measured.budgets.tolist(), measured.N_opt.tolist()))
  print(f'{len(N)} runs at {len(truths)} budgets; centres (parabola minima): '
        + ', '.join(f'{c:.3g}: {n:,.0f}' for c, n in centres.items()))
  print(f'cost per run: {costs[0]:.1f} s fixed + steps x ({costs[1] * 1e3:.1f} ms + '
        f'{costs[2] * 1e6:.3f} us x N)')
  designs = [('as run', list(zip(C.tolist(), N.tolist())))]
  for num in (int(n) for n in _NUM_SIZES.value):
    for span in (float(s) for s in _SPANS.value):
      designs.append((f'{num} sizes over {span:g}x',
                      sim.design_points(centres, num, dict.fromkeys(centres, span), sizes)))
    for rise in (float(r) for r in _RISES.value):
      spans = sim.equal_rise_spans(truths, centres, rise)
      label = f'{num} sizes, rise {rise:g} (' + ', '.join(f'{s:.1f}x' for s in spans.values()) + ')'
      designs.append((label, sim.design_points(centres, num, spans, sizes)))
  print(f'\n{"design":<44} {"runs":>4} {"minutes":>7} {"A2 mean":>8} {"worst":>6} '
        f'{"<=0.1":>6}' + (f' {"A3 mean":>8}' if _APPROACH3.value else ''))
  for label, points in designs:
    result = sim.simulate(points, truths, noise=_NOISE.value, replicates=_REPLICATES.value,
                          n_bootstrap=_N_BOOTSTRAP.value, approach3=_APPROACH3.value)
    minutes = sim.predicted_seconds(points, costs, tokens_per_step, _LANES.value) / 60
    half = result.approach2
    line = (f'{label:<44} {len(points):>4} {minutes:>7.1f} {np.nanmean(half):>8.3f} '
            f'{np.nanmax(half):>6.3f} {np.mean(half <= 0.1):>6.2f}')
    if result.approach3 is not None:
      line += f' {np.mean(result.approach3):>8.3f}'
    print(line, flush=True)


if __name__ == '__main__':
  app.run(main)
