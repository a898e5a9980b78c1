"""The measurements of docs/scaling_beyond_chinchilla.md, on the default corpus with tiny models:

  cooldown  the law from WSD cooldown branches against the law from separate cosine runs at the
            same (N, D) points, with the compute of each (configs/sweeps/cooldown*.py)
  data      the effective-data law of runs repeating 10k to 300k unique tokens, each beside a
            fresh-data control of the same steps; its base law from the cosine runs and the
            controls (configs/sweeps/data_constrained.py)
  hyper     the optimal learning rate (batch 16) and batch size (each batch at its better of two
            learning rates) against compute (configs/sweeps/learning_rate.py, batch_size.py)
  mup       the coordinate check, and the optimal learning rate against width under the standard
            parametrisation and muP (configs/sweeps/mup_transfer.py)

  python -m experiments.beyond_chinchilla --workdir=runs/beyond --parts=cooldown,data,hyper,mup

Each part runs its sweeps with the sweep runner (finished runs are skipped: rerunning resumes),
fits, prints a table and writes DIR/<part>.json and figures under DIR/figures/.
"""

import pathlib
import signal
import time
import warnings

import numpy as np
from absl import app
from absl import flags

from research import run_dir
from research.config import base_config
from research.scaling import chinchilla
from research.scaling import hyperparameters
from research.scaling import plots
from research.scaling import report as report_lib
from research.sweeps import plan
from research.sweeps import runner
from research.sweeps import table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEPS = ROOT / 'configs' / 'sweeps'
PARTS = ('cooldown', 'data', 'hyper', 'mup')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/beyond', 'Where the sweeps and results go.')
_PARTS = flags.DEFINE_list('parts', list(PARTS), f'Which measurements, of {PARTS}.')
_CONCURRENT = flags.DEFINE_integer('max_concurrent', 2, 'Training runs at once.')
_N_BOOTSTRAP = flags.DEFINE_integer('n_bootstrap', 200, 'Bootstrap replicates per fit.')


def sweep(name: str, workdir: pathlib.Path, rows: list | None = None) -> float:
  """Runs configs/sweeps/<name>.py into `workdir`; returns its wall time in seconds and appends
  the sweep's completed rows (not those of other runs in `workdir`) to `rows`."""
  start = time.monotonic()
  ours = runner.run_sweep(plan.load_sweep(SWEEPS / f'{name}.py'), workdir, sweep_name=name,
                          max_concurrent=_CONCURRENT.value)
  if rows is not None:
    rows.extend(r for r in ours if r['status'] == 'completed')
  return time.monotonic() - start


def compute(rows) -> float:
  """Training FLOPs the runs spent themselves, 6 N x own tokens (a branch: after its parent)."""
  return float(sum(6 * r['N'] * (r['own_tokens'] or r['D']) for r in rows))


def interval(fit, key):
  low, high = fit.ci[key]
  return f'[{low:.3f}, {high:.3f}]'


def fitted(fn, *args, **kwargs):
  """`fn(...)`, its warnings printed."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    result = fn(*args, **kwargs)
  for w in caught:
    print(f'  note: {w.message}')
  return result


def isoflop_fits(rows, boot) -> tuple[dict, dict]:
  """({name: fit}, {name: why it was skipped}) of Approaches 2 (parabola, Akima) and 3."""
  N, D, loss, C = (np.array([r[k] for r in rows], dtype=np.float64)
                   for k in ('N', 'D', 'final_eval_loss', 'budget'))
  calls = {'approach2': lambda: chinchilla.fit_isoflop(N, D, loss, C, **boot),
           'approach2_akima': lambda: chinchilla.fit_isoflop(N, D, loss, C, method='akima',
                                                             **boot),
           'approach3': lambda: chinchilla.fit_parametric(
               N, D, loss, **{**boot, 'n_bootstrap': min(boot['n_bootstrap'], 100)})}
  fits, skipped = {}, {}
  for name, call in calls.items():
    try:
      fits[name] = fitted(call)
    except ValueError as e:
      skipped[name] = str(e)
      print(f'  {name} skipped: {e}')
  return fits, skipped


def part_cooldown(workdir: pathlib.Path, boot, figures) -> dict:
  cosine_rows, cooldown_rows = [], []  # these sweeps' runs, not others in the directories
  walls = {'cosine': sweep('cooldown_cosine', workdir / 'cosine', cosine_rows),
           'cooldown': sweep('cooldown', workdir / 'cooldown', cooldown_rows)}
  cosine = [r for r in cosine_rows if r['kind'] == 'isoflop']
  branches = [r for r in cooldown_rows if r['kind'] == 'cooldown']
  parents = [r for r in cooldown_rows if r['kind'] == 'wsd_stable']
  result = {'wall_s': walls, 'runs': {'cosine': len(cosine), 'branches': len(branches),
                                      'constant': len(parents)},
            'compute': {'cosine': compute(cosine), 'cooldown': compute(branches + parents)}}
  result['compute']['ratio'] = result['compute']['cooldown'] / result['compute']['cosine']
  fits, skipped = {}, {}
  for name, rows in (('cosine', cosine), ('cooldown', branches)):
    print(f'\n{name} runs ({len(rows)}):')
    fits[name], skipped[name] = isoflop_fits(rows, boot)
  by_point = {(r['budget'], r['N']): r['final_eval_loss'] for r in cosine}
  result['points'] = [{'C': r['budget'], 'N': r['N'], 'D': r['D'],
                       'cosine': by_point.get((r['budget'], r['N'])),
                       'cooldown': r['final_eval_loss']} for r in branches]
  result['fits'] = {name: {k: f.as_dict() for k, f in f_.items()} for name, f_ in fits.items()}
  result['skipped'] = skipped
  print(f'\n{"sweep":<10} {"fit":<16} {"a":>7} {"95% interval":>18} {"budgets":>8}  compute')
  for name, f_ in fits.items():
    for key, fit in f_.items():
      used = f'{len(fit.budgets_used)}/{len(fit.budgets)}' if hasattr(fit, 'budgets') else ''
      print(f'{name:<10} {key:<16} {fit.a:>7.3f} {interval(fit, "a"):>18} {used:>8}  '
            f'{result["compute"][name]:.3g} FLOPs')
  print(f'cooldown compute / cosine compute = {result["compute"]["ratio"]:.2f}; wall '
        f'{walls["cooldown"]:.0f} s vs {walls["cosine"]:.0f} s')
  print(f'\n{"C":>8} {"N":>8} {"cosine loss":>12} {"cooldown loss":>14}')
  for p in sorted(result['points'], key=lambda p: (p['C'], p['N'])):
    print(f'{p["C"]:>8.3g} {p["N"]:>8.0f} {p["cosine"] or float("nan"):>12.4f} '
          f'{p["cooldown"]:>14.4f}')
  frontier = {f'{name} ({label})': fits[name][key] for name in ('cosine', 'cooldown')
              for key, label in (('approach2', 'Approach 2'), ('approach3', 'Approach 3'))
              if key in fits[name]}
  if frontier:
    plots.plot_frontier(frontier, figures / 'cooldown_vs_cosine_frontier.png')
  for name in ('cosine', 'cooldown'):
    if 'approach2' in fits[name]:
      plots.plot_isoflop(fits[name]['approach2'], figures / f'{name}_isoflop.png')
  plot_points(result['points'], figures / 'cooldown_vs_cosine_points.png')
  return result


def plot_points(points, path):
  """Final loss of each cooldown branch against the cosine run at the same (N, D)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(6, 4.5), layout='constrained')
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for budget in sorted({p['C'] for p in points}):
    these = sorted((p for p in points if p['C'] == budget), key=lambda p: p['N'])
    line = ax.plot([p['N'] for p in these], [p['cosine'] for p in these], marker='o',
                   label=f'C = {budget:.2g}, cosine')[0]
    ax.plot([p['N'] for p in these], [p['cooldown'] for p in these], marker='x', ls='--',
            color=line.get_color(), label=f'C = {budget:.2g}, cooldown branch')
  ax.set_xscale('log')
  ax.set_xlabel('parameters N')
  ax.set_ylabel('final eval loss')
  ax.set_title('IsoFLOP profiles: cosine runs (solid) vs cooldown branches (dashed)')
  ax.legend(fontsize=7)
  fig.savefig(path, dpi=110)


def part_data(workdir: pathlib.Path, boot, figures) -> dict:
  walls = {'cosine': sweep('cooldown_cosine', workdir / 'cosine'),
           'data_constrained': sweep('data_constrained', workdir / 'cosine')}
  results = table.load_results(workdir / 'cosine')
  fits = fitted(report_lib.fit_all, results, None, n_bootstrap=boot['n_bootstrap'],
                seed=boot['seed'])
  if 'data_constrained' not in fits.fits:
    raise RuntimeError(f'no data-constrained fit: {fits.skipped}')
  fit = fits.fits['data_constrained']
  summary = fit.as_dict()
  print(f'\nR* = {fit.R_star:.3g} {interval(fit, "R_star")} from {len(fit.N)} repeated runs; '
        f'base law alpha={fit.base.alpha:.3f} beta={fit.base.beta:.3f}')
  print(f'rms log residual on the repeated runs: effective data {summary["rms_log_residual"]:.4f}'
        f', Chinchilla form (repeats as fresh) {summary["chinchilla_rms_log_residual"]:.4f}')
  print(f'{"U":>8} {"epochs":>7} {"loss":>8} {"law D-prime":>12} {"law D":>8}')
  for n, d, u, l in zip(fit.N, fit.D, fit.U, fit.loss):
    print(f'{u:>8.3g} {d / u:>7.2f} {l:>8.4f} {float(fit.predict(n, d, u)):>12.4f} '
          f'{float(fit.predict_chinchilla(n, d)):>8.4f}')
  plots.plot_data_constrained(fit, figures / 'data_constrained.png')
  return {'wall_s': walls, 'fit': summary}


def part_hyper(workdir: pathlib.Path, boot, figures) -> dict:
  # Each grid's own runs (a directory may also hold an earlier grid's); on the batch-size grid,
  # each (budget, batch) keeps its lowest loss over the learning rates tried.
  slices = {'learning_rate': [], 'batch_size': []}
  walls = {name: sweep(name, workdir / 'hyper', rows) for name, rows in slices.items()}
  out = {'wall_s': walls}
  for name, these in slices.items():
    value = [r['train.learning_rate'] if name == 'learning_rate'
             else r['train.batch_size'] * r['data.seq_len'] for r in these]
    try:
      fit = fitted(hyperparameters.fit_hyperparameter_law, [r['budget'] for r in these], value,
                   [r['final_eval_loss'] for r in these], name=name, skip_bad_budgets=True,
                   **boot)
    except ValueError as e:  # too few budgets bracketed: keep the runs, say what to add
      print(f'\n{name}: no law: {e}')
      out.setdefault('skipped', {})[name] = str(e)
      continue
    print(f'\n{name}_opt = {fit.coefficient:.3g} C^{fit.exponent:.3f}, exponent '
          f'{interval(fit, "exponent")} over {len(fit.budgets_used)}/{len(fit.budgets)} budgets')
    for c, v, used in zip(fit.budgets, fit.optimum, fit.used):
      print(f'  C={c:.3g}: optimum {v:.4g}' + ('' if used else ' (not bracketed)'))
    plots.plot_hyperparameter_law(fit, figures / f'{name}_law.png')
    out[name] = fit.as_dict()
  return out


def part_mup(workdir: pathlib.Path, boot, figures) -> dict:
  from research.train import coordinate_check  # jax only for this part
  out = {'coordinate_check': {}}
  start = time.monotonic()
  for kind in ('standard', 'mup'):
    configs = {}
    for width in (32, 64, 128, 256):
      c = base_config()
      c.model.update(vocab_size=128, d_model=width, num_layers=2, num_heads=width // 16,
                     num_kv_heads=width // 16, d_ff=4 * width, max_seq_len=16,
                     parametrization=kind, mup_base_width=32)
      c.train.update(learning_rate=1e-2, warmup_steps=0, schedule='constant', weight_decay=0.0,
                     grad_clip_norm=0.0)
      configs[width] = c
    sizes, slopes = coordinate_check.width_slopes(configs)
    out['coordinate_check'][kind] = {'sizes': sizes, 'slopes': slopes}
    print(f'coordinate check, {kind}: ' + ', '.join(
        f'd={w}: |logit| {s["logits"]:.3f} |block| {s["block"]:.3f}' for w, s in sizes.items())
        + f'; slopes in log width: logits {slopes["logits"]:.2f}, block {slopes["block"]:.2f}')
  out['coordinate_check']['wall_s'] = time.monotonic() - start
  out['wall_s'] = sweep('mup_transfer', workdir / 'mup')
  results = table.load_results(workdir / 'mup')
  fits = fitted(report_lib.fit_all, results, None, n_bootstrap=boot['n_bootstrap'],
                seed=boot['seed'])
  for kind in ('standard', 'mup'):
    name = f'lr_transfer_{kind}'
    if name not in fits.fits:
      print(f'{name}: skipped: {fits.skipped.get(name)}')
      continue
    fit = fits.fits[name]
    print(f'\n{kind}: learning_rate_opt ∝ width^{fit.exponent:.3f} '
          f'{interval(fit, "exponent")}; optimum per width: ' +
          ', '.join(f'{w:.0f}: {v:.3g}' for w, v in zip(fit.budgets, fit.optimum)))
    plots.plot_hyperparameter_law(fit, figures / f'{name}.png')
    out[kind] = fit.as_dict()
  return out


def _interrupt(signum, frame):
  raise KeyboardInterrupt


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  bad = [p for p in _PARTS.value if p not in PARTS]
  if bad:
    raise app.UsageError(f'--parts: unknown {bad}; expected some of {PARTS}')
  workdir = pathlib.Path(_WORKDIR.value).absolute()
  figures = workdir / 'figures'
  figures.mkdir(parents=True, exist_ok=True)
  signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: runs checkpoint and exit
  boot = dict(n_bootstrap=_N_BOOTSTRAP.value, seed=0)
  parts = {'cooldown': part_cooldown, 'data': part_data, 'hyper': part_hyper, 'mup': part_mup}
  failed = []
  for name in _PARTS.value:
    print(f'\n===== {name}')
    start = time.monotonic()
    try:
      result = parts[name](workdir, boot, figures)
    except (ValueError, RuntimeError) as e:  # a fit that cannot be made: the runs stay, go on
      print(f'{name}: failed: {e}')
      failed.append(name)
      result = {'error': str(e)}
    result['part_wall_s'] = time.monotonic() - start
    run_dir.write_json_atomically(workdir / f'{name}.json', report_lib.plain(result))
    print(f'{name}: {result["part_wall_s"]:.0f} s wall; wrote {workdir / f"{name}.json"}')
  if failed:
    raise SystemExit(f'parts without a result: {failed} (their runs are kept; rerunning skips '
                     'finished runs)')


if __name__ == '__main__':
  app.run(main)
