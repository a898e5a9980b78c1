"""Emergence against the metric (Schaeffer et al. 2023): models of several sizes on addition
with a verifier, scored by exact match and by the per-token log-likelihood of the answer.

`python -m experiments.emergence [--out=DIR] [--steps=600]`

Every model (2 layers, widths `--widths`) trains the same steps on two-digit additions read one
character at a time. Exact match (the whole sum and its line end right, as greedy decoding writes
it) is fitted with the logistic in log N of `research.scaling.emergence.fit_emergence` (floor 0,
ceiling 1); so is the per-token answer probability exp(mean log p). Prints the table and both
fits; writes DIR/emergence.json and DIR/emergence.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from experiments import synthetic_runs  # noqa: E402
from research.evals import arithmetic, characters  # noqa: E402
from research.inference.run import load_run  # noqa: E402
from research.model import counting  # noqa: E402
from research.scaling.emergence import fit_emergence  # noqa: E402

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('emergence'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 600, 'Training steps of every model.')
_WIDTHS = flags.DEFINE_list('widths', ['8', '16', '24', '32', '48', '64', '96'], 'd_model values.')
DIGITS = 2


def _fit(N, values):
  """The logistic (floor 0, ceiling 1) or None when the points do not pin it down."""
  try:
    return fit_emergence(N, values, floor=0.0, ceiling=1.0, n_bootstrap=100)
  except (ValueError, RuntimeError) as e:
    print(f'no fit: {e}')
    return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  texts = arithmetic.documents(300, 100, DIGITS, seed=0)
  tokenizer = characters.character_tokenizer()
  rows = []
  for width in map(int, _WIDTHS.value):
    model = dict(d_model=width, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=4 * width)
    config, run, _ = synthetic_runs.train_on_texts(out / f'd{width}', texts, tokenizer, model,
                                                   _STEPS.value)
    model_config, params, tokenizer, _ = load_run(run)
    scores = arithmetic.addition(model_config, params, tokenizer, DIGITS, num_problems=500)
    rows.append({'d_model': width, 'N': counting.predict_param_counts(config.model).non_embedding,
                 **scores})
  N = np.array([r['N'] for r in rows], float)
  exact = np.array([r['exact_match'] for r in rows])
  per_token = np.array([r['token_probability'] for r in rows])
  print(f'{"d_model":>7} {"N":>8} {"exact match":>11} {"log p/token":>11} {"p/token":>8} '
        f'{"p^tokens":>8}')
  for r in rows:
    print(f'{r["d_model"]:>7} {r["N"]:>8} {r["exact_match"]:>11.3f} {r["token_logprob"]:>11.3f} '
          f'{r["token_probability"]:>8.3f} {r["token_probability"] ** r["answer_tokens"]:>8.3f}')
  fits = {'exact_match': _fit(N, exact), 'token_probability': _fit(N, per_token)}
  for name, fit in fits.items():
    if fit is not None:
      print(f'{name}: threshold N = {fit.threshold_N:,.0f} (95% CI {fit.ci["threshold_N"]}), '
            f'k = {fit.k:.2f} per e-fold of N, within range: {fit.within_range}')
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
  for ax, (name, values, label) in zip(axes, (
      ('exact_match', exact, 'exact-match accuracy (verifier)'),
      ('token_probability', per_token, 'per-token probability of the answer, exp(mean log p)'))):
    ax.semilogx(N, values, 'o', label='measured')
    if fits[name] is not None:
      ax.semilogx(grid, fits[name].predict(grid), '-', label='logistic fit')
    ax.set_xlabel('non-embedding parameters N')
    ax.set_ylabel(label, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
  axes[1].semilogx(N, [r['token_probability'] ** r['answer_tokens'] for r in rows], 'x',
                   label='p^(answer tokens)')
  axes[1].legend(fontsize=8)
  fig.suptitle(f'2-digit addition, {_STEPS.value} steps per model: one task, two metrics',
               fontsize=9)
  fig.savefig(out / 'emergence.png', dpi=110, bbox_inches='tight')
  synthetic_runs.write_results(out / 'emergence.json', {
      'steps': _STEPS.value, 'digits': DIGITS, 'rows': rows,
      'fits': {k: (f.as_dict() if f is not None else None) for k, f in fits.items()},
      'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
