"""Fit scaling laws to a sweep: `python -m experiments.fit --workdir=runs/sweep`.

Reads DIR/results.csv (completed runs) and each run's metrics.jsonl, runs every fit the data
supports (Chinchilla approaches 1-3, Kaplan's laws, and as the sweep's runs allow the
data-constrained law, the learning-rate and batch-size laws, the learning rate against width,
optionally an emergence fit), writes the figures and `fits.json` to DIR/fits/ (or --out) and
prints a table of the fitted laws, with which IsoFLOP budgets the sizes trained bracket and
which sizes would bracket the others.
"""

import sys
import warnings

from absl import app
from absl import flags

from research import run_dir
from research.scaling import report as report_lib
from research.scaling import run_kinds
from research.sweeps import table

_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory holding results.csv.')
_OUT = flags.DEFINE_string('out', None, 'Where figures and fits.json go (default DIR/fits).')
_LOSS = flags.DEFINE_enum('loss', 'final_eval_loss', ['final_eval_loss', 'final_train_loss'],
                          'Which final loss the fits use.')
_KAPLAN_PARAMS = flags.DEFINE_enum('kaplan_params', 'N_non_embedding', ['N_non_embedding', 'N'],
                                   'Parameter count of the Kaplan fits (Chinchilla uses N).')
_ACCURACY = flags.DEFINE_string('accuracy_column', None,
                                'A results column of task accuracy to fit an emergence curve to.')
_CURVES = flags.DEFINE_bool('curves', True, 'Read training curves (Approach 1, Kaplan L(C)).')
_BUDGETS = flags.DEFINE_list('budgets', None, 'Compute budgets (FLOPs) for the allocation table '
                             '(default: the largest in the data and 10x, 100x, 1000x that).')
_N_BOOTSTRAP = flags.DEFINE_integer('n_bootstrap', 200, 'Bootstrap replicates per fit '
                                    '(Approach 3 uses at most 100).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the bootstrap.')
_CONFIDENCE = flags.DEFINE_float('confidence', 0.95, 'Level of the bootstrap intervals.')
_ISOFLOP_METHOD = flags.DEFINE_enum('isoflop_method', 'parabola', ['parabola', 'akima'],
                                   "Approach 2: each budget's minimum from a parabola in log N "
                                   'or an Akima interpolation within the sizes trained.')
_KEEP_EXTRAPOLATED = flags.DEFINE_bool('keep_extrapolated', False,
                                       'Approach 2: keep budgets whose minimum the sizes trained '
                                       'do not bracket (by default they are left out).')
flags.mark_flags_as_required(['workdir'])


def _budgets(values):
  """The --budgets list as floats, or a ValueError naming the flag."""
  if values is None:
    return None
  try:
    budgets = [float(v) for v in values]
  except ValueError as e:
    raise ValueError(f'--budgets={",".join(values)}: expected numbers such as 1e21') from e
  if not budgets or any(not b > 0 for b in budgets):
    raise ValueError(f'--budgets={",".join(values)}: every budget must be > 0')
  return budgets


def main(argv):
  """Loads the sweep, fits, writes figures and fits.json, prints the table."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    budgets = _budgets(_BUDGETS.value)
    results = table.load_results(_WORKDIR.value)
    if len(results['run_id']) == 0:
      raise ValueError(f'{table.results_path(_WORKDIR.value)}: no completed runs to fit')
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      curves = (table.load_curves(run_kinds.law_runs(results)) if _CURVES.value
                else None)
    for w in caught:
      print(f'warning: {w.message}', file=sys.stderr)
    report = report_lib.fit_all(results, curves, loss_column=_LOSS.value,
                                kaplan_params=_KAPLAN_PARAMS.value,
                                accuracy_column=_ACCURACY.value,
                                n_bootstrap=_N_BOOTSTRAP.value, seed=_SEED.value,
                                confidence=_CONFIDENCE.value,
                                isoflop_method=_ISOFLOP_METHOD.value,
                                keep_extrapolated=_KEEP_EXTRAPOLATED.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  out = run_dir.as_path(_OUT.value or run_dir.as_path(_WORKDIR.value) / run_dir.FITS_DIR)
  out.mkdir(parents=True, exist_ok=True)
  plots = report_lib.write_plots(report, out)
  summary = report_lib.summary(report, budgets)
  summary['plots'] = {name: str(path) for name, path in plots.items()}
  run_dir.write_json_atomically(out / run_dir.FITS_FILE, summary)
  print(report_lib.format_table(report, budgets))
  print(f'\nwrote {out / run_dir.FITS_FILE} and {len(plots)} figures to {out}')
  if not report.fits:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
