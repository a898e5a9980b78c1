"""The emergence sweep behind `experiments.emergence`: one small model per width trained on the
same addition text, scored by exact match and per-token answer probability, each metric fitted
with the logistic law in log N, with its table and figure."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import synthetic_runs  # noqa: E402
from research.evals import arithmetic, characters  # noqa: E402
from research.inference.run import load_run  # noqa: E402
from research.model import counting  # noqa: E402
from research.scaling.emergence import fit_emergence  # noqa: E402

DIGITS = 2
METRICS = ('exact_match', 'token_probability')


def model_of_width(width: int) -> dict:
  """2 layers, 2 heads, d_ff = 4 d_model."""
  return dict(d_model=width, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=4 * width)


def sweep(out: pathlib.Path, widths, steps: int, digits: int = DIGITS, num_problems: int = 500,
          num_documents: int = 300, problems_per_document: int = 100,
          **train_kwargs) -> list[dict]:
  """Trains one model per width on the same addition text -> rows of d_model, N (non-embedding
  parameters) and `arithmetic.addition`'s scores on fresh problems; `train_kwargs` go to
  `synthetic_runs.train_on_texts` (batch_size, seq_len)."""
  texts = arithmetic.documents(num_documents, problems_per_document, digits, seed=0)
  tokenizer = characters.character_tokenizer()
  # Checkpoints every 100 steps: a loss-spike rollback then restores a nearby step, not the
  # initial parameters (whose loss the spike guard, holding later losses, calls a spike again).
  train_kwargs.setdefault('checkpoint_every', min(100, steps))
  rows = []
  for width in widths:
    config, run, summary = synthetic_runs.train_on_texts(out / f'd{width}', texts, tokenizer,
                                                         model_of_width(width), steps,
                                                         **train_kwargs)
    model_config, params, run_tokenizer, _ = load_run(run)
    scores = arithmetic.addition(model_config, params, run_tokenizer, digits, num_problems)
    rows.append({'d_model': width,
                 'N': counting.predict_param_counts(config.model).non_embedding,
                 'final_eval_loss': summary['final_eval_loss'], 'status': summary['status'],
                 'trained_steps': summary['step'], **scores})
  return rows


def completed(rows) -> list[dict]:
  """The rows whose run trained to the end (a diverged run is scored at its last good checkpoint
  and is not comparable with the others)."""
  return [r for r in rows if r.get('status', 'completed') == 'completed']


def fit_metrics(rows, n_bootstrap: int = 100) -> dict:
  """{metric: EmergenceFit or None}: the logistic in log N (floor 0, ceiling 1) of each metric;
  None (with the reason printed) where the points cannot pin it down. Only completed runs count."""
  rows = completed(rows)
  N = np.array([r['N'] for r in rows], float)
  fits = {}
  for metric in METRICS:
    try:
      fits[metric] = fit_emergence(N, [r[metric] for r in rows], floor=0.0, ceiling=1.0,
                                   n_bootstrap=n_bootstrap)
    except (ValueError, RuntimeError) as e:
      print(f'{metric}: no fit: {e}')
      fits[metric] = None
  return fits


def print_table(rows, fits) -> None:
  print(f'{"d_model":>7} {"N":>8} {"exact match":>11} {"log p/token":>11} {"p/token":>8} '
        f'{"p^tokens":>8}')
  for r in rows:
    note = '' if r.get('status', 'completed') == 'completed' else (
        f'  {r["status"]} at step {r["trained_steps"]}: left out of the fits')
    print(f'{r["d_model"]:>7} {r["N"]:>8} {r["exact_match"]:>11.3f} {r["token_logprob"]:>11.3f} '
          f'{r["token_probability"]:>8.3f} {r["token_probability"] ** r["answer_tokens"]:>8.3f}'
          f'{note}')
  for name, fit in fits.items():
    if fit is not None:
      low, high = fit.ci['threshold_N']
      print(f'{name}: threshold N = {fit.threshold_N:,.0f} (95% CI {low:,.0f} .. {high:,.0f}), '
            f'k = {fit.k:.2f} per e-fold of N, within range: {fit.within_range}')


def plot(rows, fits, path: pathlib.Path, title: str) -> None:
  """Both metrics against N (log axis) with their fitted logistics (completed runs only)."""
  rows = completed(rows)
  N = np.array([r['N'] for r in rows], float)
  grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  labels = {'exact_match': 'exact-match accuracy (verifier)',
            'token_probability': 'per-token probability of the answer, exp(mean log p)'}
  for ax, metric in zip(axes, METRICS):
    ax.semilogx(N, [r[metric] for r in rows], 'o', label='measured')
    if fits[metric] is not None:
      ax.semilogx(grid, fits[metric].predict(grid), '-',
                  label=f'logistic, k = {fits[metric].k:.2f}')
    ax.set_xlabel('non-embedding parameters N')
    ax.set_ylabel(labels[metric], fontsize=8)
    ax.set_ylim(-0.02, 1.02)
  axes[1].semilogx(N, [r['token_probability'] ** r['answer_tokens'] for r in rows], 'x',
                   label='p/token ^ answer tokens')
  for ax in axes:
    ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=9)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
