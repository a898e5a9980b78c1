"""Emergence against the metric (Schaeffer et al. 2023): models of several sizes on addition
with a verifier, scored by exact match and by the per-token log-likelihood of the answer.

`python -m experiments.emergence [--out=DIR] [--steps=600] [--widths=8,16,24,32,48] [--digits=2]`

Every model (2 layers, widths `--widths`) trains the same steps on the same additions of
`--digits`-digit numbers read one character at a time. Exact match (the whole sum and its line
end right, as greedy decoding writes it) is fitted with the logistic in log N of
`research.scaling.emergence.fit_emergence` (floor 0, ceiling 1: both metrics are probabilities);
so is the per-token answer probability exp(mean log p). Prints the table and both fits; writes
DIR/emergence.json and DIR/emergence.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from experiments import synthetic_runs  # noqa: E402
from experiments.emergence_sweep import DIGITS, fit_metrics, plot, print_table, sweep  # noqa: E402

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('emergence'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 600, 'Training steps of every model.')
_WIDTHS = flags.DEFINE_list('widths', ['8', '16', '24', '32', '48'], 'd_model values.')
_PROBLEMS = flags.DEFINE_integer('problems', 500, 'Fresh test problems per model.')
_DIGITS = flags.DEFINE_integer('digits', DIGITS, 'Digits of each addend (1 to 9).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    widths = [int(w) for w in _WIDTHS.value]
  except ValueError:
    raise app.UsageError(f'--widths={_WIDTHS.value}: expected integers') from None
  if len(set(widths)) < 3 or min(widths) < 2 or any(w % 2 for w in widths):
    raise app.UsageError(f'--widths={widths}: need at least 3 distinct even widths >= 2 '
                         '(2 heads; the fit has 2 free parameters)')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  if not 1 <= _DIGITS.value <= 9:
    raise app.UsageError(f'--digits={_DIGITS.value}: must lie in [1, 9]')
  rows = sweep(out, widths, _STEPS.value, _DIGITS.value, _PROBLEMS.value)
  fits = fit_metrics(rows)
  print_table(rows, fits)
  plot(rows, fits, out / 'emergence.png',
       f'{_DIGITS.value}-digit addition, {_STEPS.value} steps per model: one task, two metrics')
  synthetic_runs.write_results(out / 'emergence.json', {
      'steps': _STEPS.value, 'digits': _DIGITS.value, 'rows': rows,
      'fits': {k: (f.as_dict() if f is not None else None) for k, f in fits.items()},
      'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
