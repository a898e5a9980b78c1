"""Mixture of Experts against the dense model of equal active FLOPs, on the same tokens (issue 15).

  python -m experiments.moe_vs_dense --workdir=runs/moe_vs_dense [--num_steps=600]

Runs configs/sweeps/moe_vs_dense.py (dense; 8 experts top-2 with the load-balancing loss; the
same without it; rerunning skips finished runs), then prints a table of each run's parameters
(total and active), training FLOPs, validation loss and bits per byte, tokens/s and how evenly its
experts were loaded (the most and least loaded expert as multiples of the even share, averaged
over the MoE layers, at the end and worst over training), writes DIR/moe_vs_dense.json and plots
validation loss and expert load against step in DIR/moe_vs_dense.png.
"""

import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags
import numpy as np

from research import run_dir
from research.config import load_python_file
from research.run_dir.metrics import metric_records, read_metrics

SWEEP = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'sweeps' / 'moe_vs_dense.py'

_WORKDIR = flags.DEFINE_string('workdir', None, 'The three runs go here.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', None, 'Steps of every run (default: the sweep '
                                  "file's NUM_STEPS).")
_SET = flags.DEFINE_list('set', [], "Config overrides for every run, 'section.field=value' "
                         '(e.g. model.d_model=32): a smaller setting.')
flags.mark_flag_as_required('workdir')


def load_curves(path) -> dict:
  """Step -> mean over MoE layers of the most and least loaded expert's share (x even share)."""
  curves = {'step': [], 'load_max': [], 'load_min': []}
  for record in metric_records(path):
    maxes = [v for k, v in record.items() if k.startswith('moe/layer') and k.endswith('load_max')]
    mins = [v for k, v in record.items() if k.startswith('moe/layer') and k.endswith('load_min')]
    if maxes:
      curves['step'].append(record['step'])
      curves['load_max'].append(float(np.mean(maxes)))
      curves['load_min'].append(float(np.mean(mins)))
  return curves


def run_summary(row: dict) -> dict:
  """One table row from a finished run's summary.json and metrics.jsonl."""
  path = row['run_dir']
  summary = run_dir.read_json(pathlib.Path(path) / 'summary.json') or {}
  speeds = [r['tokens_per_sec'] for r in metric_records(path) if 'tokens_per_sec' in r][1:]
  eval_tokens, eval_loss = read_metrics(path, 'eval_loss')
  loads = load_curves(path)
  out = {
      'label': row['label'], 'status': row['status'], 'steps': row['step'],
      'params_total': summary.get('params_total'), 'params_active': summary.get('params_active'),
      'train_flops_chinchilla': summary.get('flops', {}).get('chinchilla'),
      'eval_loss': row['final_eval_loss'], 'eval_bits_per_byte': row['final_eval_bits_per_byte'],
      'tokens_per_sec': statistics.median(speeds) if speeds else float('nan'),
      'wall_time_s': row['wall_time_s'],
      'eval_curve': {'tokens': eval_tokens.tolist(), 'loss': eval_loss.tolist()},
      'load_curve': loads,
  }
  if loads['step']:
    out.update(final_load_max=loads['load_max'][-1], final_load_min=loads['load_min'][-1],
               worst_load_max=max(loads['load_max']), worst_load_min=min(loads['load_min']))
  return out


COLUMNS = ('label', 'params_total', 'params_active', 'train_flops_chinchilla', 'eval_loss',
           'eval_bits_per_byte', 'tokens_per_sec', 'final_load_max', 'final_load_min',
           'worst_load_max', 'worst_load_min', 'wall_time_s')


def _cell(value) -> str:
  if value is None:
    return '-'
  if isinstance(value, int) and not isinstance(value, bool):
    return f'{value:,}' if value < 1e9 else f'{value:.3g}'
  if isinstance(value, float):
    return f'{value:.0f}' if abs(value) >= 100 else f'{value:.4f}'
  return str(value)


def markdown_table(rows: list[dict]) -> str:
  lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(_cell(r.get(c)) for c in COLUMNS) + ' |' for r in rows]
  return '\n'.join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> None:
  """Validation loss against tokens, and the mean most/least loaded expert against step."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 3.8), layout='constrained')
  loss_ax, load_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for i, r in enumerate(rows):
    color = f'C{i}'
    loss_ax.plot(r['eval_curve']['tokens'], r['eval_curve']['loss'], 'o-', color=color,
                 label=f"{r['label']} ({r['eval_loss']:.3f})")
    if r['load_curve']['step']:
      curve = r['load_curve']
      load_ax.plot(curve['step'], curve['load_max'], color=color, label=f"{r['label']}: most")
      load_ax.plot(curve['step'], curve['load_min'], '--', color=color,
                   label=f"{r['label']}: least")
  loss_ax.set(xlabel='training tokens', ylabel='validation loss (nats/token)',
              title='equal active FLOPs, same tokens')
  loss_ax.legend(fontsize=8)
  load_ax.axhline(1.0, color='gray', lw=0.8)
  load_ax.set(xlabel='step', ylabel='expert load / even share (mean over layers)',
              title='expert load (1 = even)')
  load_ax.set_ylim(bottom=0)
  load_ax.legend(fontsize=8)
  FigureCanvasAgg(fig).print_png(str(path))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _NUM_STEPS.value is not None and _NUM_STEPS.value < 1:
    print(f'error: --num_steps={_NUM_STEPS.value}: must be at least 1', file=sys.stderr)
    sys.exit(2)
  from research.sweeps import runner
  workdir = run_dir.absolute(_WORKDIR.value)
  try:
    sweep = load_python_file(SWEEP).get_sweep(num_steps=_NUM_STEPS.value,
                                              overrides=tuple(_SET.value))
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  start = time.time()
  order = [label for label, _ in sweep]
  table_rows = sorted(runner.run_sweep(sweep, workdir, sweep_name='moe_vs_dense'),
                      key=lambda row: order.index(row['label']))
  print(f'moe_vs_dense: sweep {time.time() - start:.0f} s')
  rows = [run_summary(r) for r in table_rows if r['status'] == 'completed']
  print(f'\n{markdown_table(rows)}\n')
  run_dir.write_json_atomically(workdir / 'moe_vs_dense.json', rows)
  plot(rows, workdir / 'moe_vs_dense.png')
  print(f'wrote {workdir / "moe_vs_dense.json"} and {workdir / "moe_vs_dense.png"}')
  bad = [r['label'] for r in table_rows if r['status'] != 'completed']
  if bad:
    print(f'not completed: {", ".join(bad)}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
