"""Plot and tabulate an MoE-against-dense sweep (configs/sweeps/moe.py) from its run directories.

`python -m experiments.moe_sweep_plot --workdir=runs/moe [--out=docs/moe_sweep.png] [--note=...]`
rebuilds `results.csv`, prints one line per finished run (active and total parameters, final
train and validation loss, tokens/s, the most and least loaded expert at the last logged step as
multiples of the even share) and draws the training curves (left) and final validation loss per
budget (right) of each variant.
"""

import matplotlib
from absl import app
from absl import flags

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from research import run_dir as run_dir_lib  # noqa: E402
from research.sweeps import table  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', 'runs/moe', 'The sweep directory.')
_OUT = flags.DEFINE_string('out', 'docs/moe_sweep.png', 'Where to write the figure.')
_NOTE = flags.DEFINE_string('note', '', 'A line added under the title (where it ran, how long).')


def last_expert_load(run_dir) -> tuple[float, float] | None:
  """(max, min) over MoE layers of the last logged load_max / load_min; None for dense runs."""
  last = None
  for record in run_dir_lib.metric_records(run_dir):
    if any(k.endswith('/load_max') for k in record):
      last = record
  if last is None:
    return None
  return (max(v for k, v in last.items() if k.endswith('/load_max')),
          min(v for k, v in last.items() if k.endswith('/load_min')))


def main(argv):
  del argv
  rows = [r for r in table.write_table(_WORKDIR.value) if r['status'] == 'completed']
  if not rows:
    raise app.UsageError(f'--workdir={_WORKDIR.value}: no completed runs')
  rows.sort(key=lambda r: (r['budget'], r['num_experts'], r['label']))
  fig, (curves, finals) = plt.subplots(1, 2, figsize=(11, 4))
  colours = {}
  for r in rows:
    variant = r['label'].split('-')[1]
    colour = colours.setdefault(variant, f'C{len(colours)}')
    tokens, loss = run_dir_lib.read_metrics(r['run_dir'], 'loss')
    curves.plot(tokens, loss, color=colour, lw=0.8, label=f'{r["label"]}')
    load = last_expert_load(r['run_dir'])
    load_text = f'load max/min {load[0]:.2f}/{load[1]:.2f}' if load else 'dense'
    print(f'{r["label"]:24s} N_active={r["N"]:>9,.0f} N_total={r["N_total"]:>9,.0f} '
          f'D={r["D"]:,.0f} train={r["final_train_loss"]:.4f} eval={r["final_eval_loss"]:.4f} '
          f'tokens/s={r["tokens_per_sec"]:,.0f} wall={r["wall_time_s"]:.0f}s {load_text}')
  for variant, colour in colours.items():
    points = [(r['budget'], r['final_eval_loss']) for r in rows
              if r['label'].split('-')[1] == variant]
    finals.plot(*zip(*points), 'o-', color=colour, label=variant)
  curves.set(xlabel='tokens', ylabel='training loss (nats)', xscale='log')
  curves.legend(fontsize=7)
  finals.set(xlabel='budget C = 6 N_active D (FLOPs)', ylabel='final validation loss (nats)',
             xscale='log')
  finals.legend()
  title = 'MoE against dense of equal active parameters, same tokens'
  fig.suptitle(f'{title}\n{_NOTE.value}' if _NOTE.value else title)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=120)
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
