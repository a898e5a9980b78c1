"""The pipeline bubble in wall time against its theory, (S - 1) / (R M + S - 1) (issue 15).

  python -m experiments.pipeline_bubble [--config=configs/tiny.py] [--devices=8] [--steps=10]
      [--microbatches=1,2,4,8] [--out=docs/pipeline_bubble.png] [--json=FILE]

Times the real train step (`experiments.bench`, one fresh process per setting, on `--devices`
host devices) without stages (the batch split over all devices by FSDP) and pipelined, GPipe and
circular, for several stage and microbatch counts, all with the same batch and model. Idle stages
of this pipeline compute on placeholder inputs whose results are thrown away, so on devices that
share CPU cores a pipelined step does R M + S - 1 iterations' work where R M are needed, and the
measured bubble, 1 - (step time without stages) / (pipelined step time), should approach the
theory; on separate chips the idle slots are waiting time instead and the same ratio holds. The
table and figure put the two side by side.
"""

import json
import os
import pathlib
import subprocess
import sys

from absl import app
from absl import flags

from research.model.pipeline import Schedule, theoretical_bubble

ROOT = pathlib.Path(__file__).resolve().parents[1]
_CONFIG = flags.DEFINE_string('config', 'configs/tiny.py', 'Model and batch of every setting.')
_DEVICES = flags.DEFINE_integer('devices', 8, 'Host devices (the product of every mesh).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per setting (after 2 untimed).')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Global batch in sequences.')
_MICRO = flags.DEFINE_list('microbatches', ['1', '2', '4', '8'], 'Which M of SETTINGS to run.')
_SET = flags.DEFINE_list('set', [], 'More --config.x=y overrides for every setting (x=y).')
_OUT = flags.DEFINE_string('out', 'docs/pipeline_bubble.png', 'Where to write the figure.')
_JSON = flags.DEFINE_string('json', '', 'Also write the rows here.')

# (schedule, stages S, microbatches M, repeats R)
SETTINGS = [('gpipe', 2, m, 1) for m in (1, 2, 4, 8)] + [('gpipe', 4, m, 1) for m in (1, 2, 4, 8)] \
    + [('circular', 2, m, 2) for m in (2, 4, 8)]


def bench(overrides: list[str], devices: int, steps: int) -> dict:
  """The JSON line `experiments.bench` prints last, run in a fresh process on `devices`."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  command = [sys.executable, '-m', 'experiments.bench', f'--config={_CONFIG.value}',
             f'--steps={steps}', '--warmup=2', '--config.model.scan_layers=True',
             f'--config.train.batch_size={_BATCH.value}'] + overrides + \
      [f'--config.{item}' for item in _SET.value]  # e.g. model.d_model=32
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  if done.returncode:
    raise RuntimeError(f'{" ".join(command)} failed:\n{done.stderr[-3000:]}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def measure(devices: int, steps: int, log=print) -> tuple[dict, list[dict]]:
  plain = bench([f"--config.mesh.ici=(1,1,{devices},1,1)"], devices, steps)
  log(f'no stages: {plain["step_time_s"]:.3f} s a step')
  rows = []
  for name, s, m, r in SETTINGS:
    if devices % s or str(m) not in _MICRO.value:
      continue
    result = bench([f'--config.mesh.ici=(1,{s},{devices // s},1,1)',
                    f'--config.train.pipeline_schedule={name}',
                    f'--config.train.pipeline_microbatches={m}',
                    f'--config.train.pipeline_repeats={r}'], devices, steps)
    row = {'schedule': name, 'stages': s, 'microbatches': m, 'repeats': r,
           'step_time_s': result['step_time_s'], 'step_time_min_s': result['step_time_min_s'],
           'theory': theoretical_bubble(Schedule(s, m, r)),
           'measured': 1 - plain['step_time_s'] / result['step_time_s'],
           'measured_from_min': 1 - plain['step_time_min_s'] / result['step_time_min_s']}
    rows.append(row)
    log(f"{name} S={s} M={m} R={r}: {row['step_time_s']:.3f} s a step, bubble measured "
        f"{row['measured']:.3f} (from the fastest steps {row['measured_from_min']:.3f}), "
        f"theory {row['theory']:.3f}")
  return plain, rows


def plot(rows: list[dict], path: pathlib.Path) -> None:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(5, 4), layout='constrained')
  ax = fig.add_subplot()
  groups = sorted({(r['schedule'], r['stages'], r['repeats']) for r in rows})
  for i, (name, s, r) in enumerate(groups):
    mine = [row for row in rows if (row['schedule'], row['stages'], row['repeats']) == (name, s, r)]
    label = f'{name} S={s}' + (f' R={r}' if r > 1 else '')
    ax.plot([x['theory'] for x in mine], [x['measured'] for x in mine], 'o', color=f'C{i}',
            label=label)
    for x in mine:
      ax.annotate(f"M={x['microbatches']}", (x['theory'], x['measured']), fontsize=7,
                  xytext=(3, -8), textcoords='offset points')
  ax.plot([0, 0.8], [0, 0.8], color='gray', lw=0.8, label='measured = theory')
  ax.set(xlabel='theory (S - 1) / (R M + S - 1)', ylabel='measured 1 - T(no stages) / T',
         title='pipeline bubble')
  ax.legend(fontsize=8)
  FigureCanvasAgg(fig).print_png(str(path))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _DEVICES.value < 2 or _STEPS.value < 1:
    print(f'error: --devices={_DEVICES.value} must be >= 2 and --steps={_STEPS.value} >= 1',
          file=sys.stderr)
    sys.exit(2)
  plain, rows = measure(_DEVICES.value, _STEPS.value)
  print('\n| schedule | S | M | R | step (s) | bubble theory | measured | from fastest steps |')
  print('|---|---|---|---|---|---|---|---|')
  print(f"| no stages | 1 | 1 | 1 | {plain['step_time_s']:.3f} | 0 | - | - |")
  for r in rows:
    print(f"| {r['schedule']} | {r['stages']} | {r['microbatches']} | {r['repeats']} | "
          f"{r['step_time_s']:.3f} | {r['theory']:.3f} | {r['measured']:.3f} | "
          f"{r['measured_from_min']:.3f} |")
  plot(rows, ROOT / _OUT.value)
  print(f'wrote {_OUT.value}')
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps({'no_stages': plain, 'rows': rows}, indent=1))


if __name__ == '__main__':
  app.run(main)
