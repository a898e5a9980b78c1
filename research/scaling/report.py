"""Every fit a results table supports, gathered as one report: fits, JSON summary, text table.

Which fit needs what: Approach 2 needs runs labelled with IsoFLOP budgets; Approach 3 and the
Kaplan laws need runs of several N and D; Approach 1 and the learning-curve L(C) need training
curves; the emergence fit needs an accuracy column. Chinchilla's fits use N = all parameters
(the table's N), Kaplan's use `kaplan_params` (non-embedding by default, as that paper does).
Kaplan's L(N) takes, for each model size, its lowest-loss run (the closest to convergence), and
L(D) for each token count its lowest-loss run (the largest model); L(C) takes the lower envelope
of the training curves. A fit the data cannot support is listed under `skipped` with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from etils import epath

from research.scaling import chinchilla
from research.scaling import data_constrained
from research.scaling import emergence
from research.scaling import fit_utils
from research.scaling import hyperparameters
from research.scaling import kaplan
from research.scaling import run_kinds

NAMES = {
    'approach1': 'Chinchilla approach 1 (training-curve envelope)',
    'approach2': 'Chinchilla approach 2 (IsoFLOP profiles)',
    'approach3': 'Chinchilla approach 3 (parametric L(N, D))',
    'kaplan_N': 'Kaplan L(N)',
    'kaplan_D': 'Kaplan L(D)',
    'kaplan_C': 'Kaplan L(C), compute frontier',
    'kaplan_ND': 'Kaplan L(N, D)',
    'emergence': 'Emergence (logistic in log N)',
    'data_constrained': "Data-constrained L(N, D'), Muennighoff et al.",
    'learning_rate_law': 'Optimal learning rate against compute',
    'batch_size_law': 'Optimal batch size (tokens) against compute',
    'lr_transfer_standard': 'Optimal learning rate against width, standard',
    'lr_transfer_mup': 'Optimal learning rate against width, muP',
}


@dataclasses.dataclass
class Report:
  """Fit objects by name, the reasons fits were skipped, warnings raised while fitting, and a
  description of the data."""
  fits: dict
  skipped: dict
  notes: dict
  data: dict


def _run(report: Report, name: str, fit) -> None:
  """Calls `fit()`, filing its result, its warnings, or the ValueError that skips it."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    try:
      report.fits[name] = fit()
    except ValueError as e:
      report.skipped[name] = str(e)
  if caught:
    report.notes[name] = [str(w.message) for w in caught]


def fit_all(results: dict, curves=None, *, loss_column: str = 'final_eval_loss',
            kaplan_params: str = 'N_non_embedding', accuracy_column: str | None = None,
            n_bootstrap: int = 200, seed: int = 0, confidence: float = 0.95,
            parametric_grid: dict | None = None, isoflop_method: str = 'parabola',
            keep_extrapolated: bool = False) -> Report:
  """Runs every fit `results` (from `research.sweeps.table.load_results`) and `curves` (from
  `research.sweeps.table.load_curves`, N = all parameters) support; Approach 3 starts from the
  paper's grid unless `parametric_grid` is given, and uses at most 100 bootstrap replicates.
  Approach 2 finds each budget's minimum with `isoflop_method` and, unless `keep_extrapolated`,
  leaves out budgets whose minimum the sizes trained do not bracket. Runs that repeat their
  unique tokens (a `unique_tokens` column, D > U) are kept out of every fit but the
  data-constrained one, which starts from Approach 3; the runs of a hyperparameter sweep
  (`kind` 'hyperparameter') feed only the learning-rate and batch-size laws, and the
  constant-learning-rate parents of cooldown branches (`kind` 'wsd_stable') no fit at all (their
  branches are ordinary runs), and a muP transfer sweep's (`kind` 'mup_transfer') only the
  optimal learning rate against width per parametrisation (`run_kinds` says which runs feed
  which fit). Pass `curves` of `run_kinds.law_runs(results)` only."""
  for column in ('N', 'D', loss_column, kaplan_params):
    if column not in results:
      raise ValueError(f'results: no column {column!r} (columns: {sorted(results)})')
  fit_utils.check_bootstrap(n_bootstrap, confidence, None)
  boot = dict(n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
  N = np.asarray(results['N'], dtype=np.float64)
  D = np.asarray(results['D'], dtype=np.float64)
  loss = np.asarray(results[loss_column], dtype=np.float64)
  n_kaplan = np.asarray(results[kaplan_params], dtype=np.float64)
  ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(loss) & (loss > 0) & (N > 0) & (D > 0)
  budget = np.asarray(results.get('budget', np.full(len(N), np.nan)), dtype=np.float64)
  report = Report({}, {}, {}, {
      'runs': int(len(N)), 'runs_fitted': int(ok.sum()), 'loss_column': loss_column,
      'kaplan_params': kaplan_params, 'budgets': sorted({float(b) for b in budget[ok]
                                                         if np.isfinite(b)}),
      'curves': len(curves or []), 'max_C': float(np.max(6 * N[ok] * D[ok])) if ok.any() else 0})
  tuning = ok & run_kinds.kind_in(results, (run_kinds.TUNING_KIND,))
  transfer = ok & run_kinds.kind_in(results, (run_kinds.TRANSFER_KIND,))
  _run_hyperparameter_laws(report, results, tuning, loss, boot, isoflop_method,
                           keep_extrapolated)
  _run_transfer(report, results, transfer, loss, boot, isoflop_method, keep_extrapolated)
  ok &= ~run_kinds.kept_out(results)
  unique = run_kinds.unique_tokens(results)[ok]
  report.data['repeated_runs'] = int(run_kinds.is_repeated(D[ok], unique).sum())
  N_all, D_all, loss_all = N[ok], D[ok], loss[ok]
  fresh = ~run_kinds.is_repeated(D_all, unique)
  N, D, loss, n_kaplan, budget = (x[ok][fresh] for x in (N, D, loss, n_kaplan, budget))
  in_budget = np.isfinite(budget)

  if in_budget.any():
    _run(report, 'approach2', lambda: chinchilla.fit_isoflop(
        N[in_budget], D[in_budget], loss[in_budget], budget[in_budget], skip_bad_budgets=True,
        method=isoflop_method, keep_extrapolated=keep_extrapolated, **boot))
  else:
    report.skipped['approach2'] = 'no run is labelled with an IsoFLOP budget'
  _run(report, 'approach3', lambda: chinchilla.fit_parametric(
      N, D, loss, grid=parametric_grid, **{**boot, 'n_bootstrap': min(n_bootstrap, 100)}))
  if report.data['repeated_runs'] and 'approach3' in report.fits:
    _run(report, 'data_constrained', lambda: data_constrained.fit_data_constrained(
        N_all, D_all, unique, loss_all, base=report.fits['approach3'],
        **{**boot, 'n_bootstrap': min(n_bootstrap, 100)}))
  elif report.data['repeated_runs']:
    report.skipped['data_constrained'] = 'needs Approach 3 (the law of the fresh-data runs)'
  if curves:
    _run(report, 'approach1', lambda: chinchilla.fit_envelope(curves, **boot))
  else:
    report.skipped['approach1'] = 'no training curves were found'

  kaplan_ok = np.isfinite(n_kaplan) & (n_kaplan > 0)
  nk, dk, lk = n_kaplan[kaplan_ok], D[kaplan_ok], loss[kaplan_ok]
  best_n = kaplan.lowest_loss_per(nk, lk)
  best_d = kaplan.lowest_loss_per(dk, lk)
  _run(report, 'kaplan_N', lambda: kaplan.fit_kaplan_n(nk[best_n], lk[best_n], **boot))
  _run(report, 'kaplan_D', lambda: kaplan.fit_kaplan_d(dk[best_d], lk[best_d], **boot))
  _run(report, 'kaplan_ND', lambda: kaplan.fit_kaplan_nd(nk, dk, lk, **boot))
  _run(report, 'kaplan_C', lambda: _fit_kaplan_c(N, n_kaplan, D, loss, curves, boot))

  if accuracy_column is not None:
    if accuracy_column not in results:
      report.skipped['emergence'] = f'no column {accuracy_column!r}'
    else:
      acc = np.asarray(results[accuracy_column], dtype=np.float64)[ok]
      good = np.isfinite(acc)
      _run(report, 'emergence', lambda: emergence.fit_emergence(N[good], acc[good], **boot))
  return report


def _run_transfer(report: Report, results: dict, rows: np.ndarray, loss, boot, method: str,
                  keep_extrapolated: bool) -> None:
  """Per parametrisation, the optimal learning rate as a power law in width (muP transfer: an
  exponent near 0 means the optimum stays put)."""
  columns = ('model.d_model', 'model.parametrization', 'train.learning_rate')
  if not rows.any() or any(c not in results for c in columns):
    return
  width = np.asarray(results['model.d_model'], dtype=np.float64)
  lr = np.asarray(results['train.learning_rate'], dtype=np.float64)
  for kind in sorted(set(results['model.parametrization'][rows])):
    these = rows & (results['model.parametrization'] == kind)
    _run(report, f'lr_transfer_{kind}', lambda these=these:
         hyperparameters.fit_hyperparameter_law(
             width[these], lr[these], loss[these], name='learning_rate', against='width',
             method=method, keep_extrapolated=keep_extrapolated, skip_bad_budgets=True, **boot))


def _run_hyperparameter_laws(report: Report, results: dict, rows: np.ndarray, loss, boot,
                             method: str, keep_extrapolated: bool) -> None:
  """The learning-rate and batch-size (tokens per step) laws of the hyperparameter sweep's runs
  (`rows`), each where its hyperparameter varies within budgets."""
  if not rows.any():
    return
  budget = np.asarray(results.get('budget', np.full(len(rows), np.nan)), dtype=np.float64)
  rows = rows & np.isfinite(budget)
  for name, columns in run_kinds.HYPERPARAMETER_COLUMNS.items():
    if any(c not in results or results[c].dtype == object for c in columns):
      report.skipped[f'{name}_law'] = f'no column {" or ".join(columns)}'
      continue
    value = np.prod([np.asarray(results[c], dtype=np.float64) for c in columns], axis=0)
    if len({(b, v) for b, v in zip(budget[rows], value[rows])}) <= len(set(budget[rows])):
      continue  # not varied in this sweep
    _run(report, f'{name}_law', lambda value=value, name=name:
         hyperparameters.fit_hyperparameter_law(
             budget[rows], value[rows], loss[rows], name=name, method=method,
             keep_extrapolated=keep_extrapolated, skip_bad_budgets=True, **boot))


def _fit_kaplan_c(N, n_kaplan, D, loss, curves, boot):
  """L(C) on the lower envelope of the training curves (or of final losses without curves),
  C = 6 N tokens with Kaplan's N."""
  if not curves:
    return kaplan.fit_kaplan_c(6 * n_kaplan * D, loss, **boot)
  to_kaplan = dict(zip(N, n_kaplan))
  C = np.concatenate([6 * to_kaplan.get(n, n) * tokens for n, tokens, _ in curves])
  loss = np.concatenate([curve for _, _, curve in curves])
  return kaplan.fit_kaplan_c(C, loss, **boot)


def default_budgets(report: Report) -> list[float]:
  """The largest compute in the data and 10x, 100x, 1000x beyond it."""
  top = report.data.get('max_C') or 1e21
  return [top * 10.0 ** k for k in range(4)]


def allocations(report: Report, budgets) -> list[dict]:
  """N_opt, D_opt and D/N at each budget from every compute-optimal fit."""
  rows = []
  for C in budgets:
    for name in ('approach1', 'approach2', 'approach3'):
      fit = report.fits.get(name)
      if fit is None:
        continue
      n, d = fit.optimal_allocation(C)
      row = {'C': float(C), 'fit': name, 'N_opt': float(n), 'D_opt': float(d),
             'tokens_per_parameter': float(d / n)}
      if name == 'approach3':
        row['loss'] = float(fit.loss_at_budget(C))
      rows.append(row)
  return rows


def plain(value):
  """`value` with tuples as lists, numpy scalars as Python ones and NaN or inf as None."""
  if isinstance(value, dict):
    return {k: plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def summary(report: Report, budgets=None) -> dict:
  """The report as strict-JSON values (no NaN: a missing interval is null)."""
  budgets = default_budgets(report) if budgets is None else list(budgets)
  return plain({'data': report.data, 'fits': {k: v.as_dict() for k, v in report.fits.items()},
                 'skipped': report.skipped, 'warnings': report.notes,
                 'allocations': allocations(report, budgets)})


def _fmt(value) -> str:
  """A number to 4 significant digits; anything else as str."""
  if isinstance(value, (bool, np.bool_)):
    return str(value)
  if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
    return str(value)
  return f'{value:.4g}'


_SHOWN = ('a', 'b', 'E', 'A', 'B', 'alpha', 'beta', 'alpha_N', 'alpha_D', 'N_c', 'D_c', 'C_c',
          'k_N', 'k_D', 'threshold_N', 'k', 'floor', 'ceiling', 'R_star', 'rms_log_residual',
          'chinchilla_rms_log_residual', 'exponent', 'coefficient')


def _isoflop_coverage(report: Report) -> list[str]:
  """Which IsoFLOP budgets Approach 2 used, and the sizes that would bracket the others."""
  fit = report.fits.get('approach2')
  if fit is None:
    return []
  lines = ['', f'IsoFLOP budgets ({fit.method}): {int(fit.bracketed.sum())} of '
           f'{len(fit.budgets)} bracketed by the sizes trained, {len(fit.budgets_used)} used'
           + (' (extrapolated minima kept)' if fit.keep_extrapolated else '')]
  lines += [f'  {line}' for line in fit.advice if line]
  return lines


def format_table(report: Report, budgets=None) -> str:
  """A plain-text table of the fitted laws (parameters with intervals), the compute-optimal
  exponents, tokens per parameter at `budgets`, and what was skipped."""
  budgets = default_budgets(report) if budgets is None else list(budgets)
  lines = [f'{"fit":<48} {"parameter":<12} {"value":>11}   interval']
  for name, fit in report.fits.items():
    d = fit.as_dict()
    ci = d.get('ci', {})
    level = f'{100 * d.get("confidence", 0):.0f}%'
    first = True
    for key in _SHOWN:
      if key not in d:
        continue
      low, high = ci.get(key, (float('nan'), float('nan')))
      interval = f'[{_fmt(low)}, {_fmt(high)}] ({level})' if math.isfinite(low) else ''
      label = NAMES.get(name, name) if first else ''
      lines.append(f'{label:<48} {key:<12} {_fmt(d[key]):>11}   {interval}')
      first = False
  lines += _isoflop_coverage(report)
  rows = allocations(report, budgets)
  if rows:
    lines += ['', f'{"compute C":>11} {"fit":<10} {"N_opt":>11} {"D_opt":>11} {"D/N":>8}']
    lines += [f'{r["C"]:>11.3g} {r["fit"]:<10} {r["N_opt"]:>11.4g} {r["D_opt"]:>11.4g} '
              f'{r["tokens_per_parameter"]:>8.3g}' for r in rows]
  if report.skipped:
    lines += ['', 'skipped:'] + [f'  {NAMES.get(k, k)}: {v}' for k, v in report.skipped.items()]
  if report.notes:
    lines += ['', 'warnings:'] + [f'  {NAMES.get(k, k)}: {m}' for k, v in report.notes.items()
                                  for m in v]
  return '\n'.join(lines)


def write_plots(report: Report, out_dir) -> dict:
  """Every figure the fits support, as {name: path} under `out_dir`."""
  from research.scaling import plots  # matplotlib only when figures are drawn
  out = epath.Path(out_dir)  # a local path or a URI (gs://bucket/sweep/fits)
  fits, paths = report.fits, {}
  if 'approach2' in fits:
    paths['isoflop'] = plots.plot_isoflop(fits['approach2'], out / 'isoflop.png')
  frontier = {label: fits[name] for name, label in (('approach1', 'Approach 1'),
                                                     ('approach2', 'Approach 2'),
                                                     ('approach3', 'Approach 3'))
              if name in fits}
  if frontier:
    paths['frontier'] = plots.plot_frontier(frontier, out / 'frontier.png')
  if 'approach1' in fits:
    paths['envelope'] = plots.plot_envelope(fits['approach1'], out / 'envelope.png')
  if 'approach3' in fits:
    paths['residuals'] = plots.plot_residuals(fits['approach3'], out / 'residuals.png')
  for name in ('kaplan_N', 'kaplan_D', 'kaplan_C'):
    if name in fits:
      paths[name] = plots.plot_power_law(fits[name], out / f'loss_vs_{name[-1]}.png')
  if 'kaplan_ND' in fits:
    paths['kaplan_ND'] = plots.plot_joint(fits['kaplan_ND'], out / 'loss_vs_N_D.png')
  if 'emergence' in fits:
    paths['emergence'] = plots.plot_emergence(fits['emergence'], out / 'emergence.png')
  for name in ('learning_rate_law', 'batch_size_law', 'lr_transfer_standard', 'lr_transfer_mup'):
    if name in fits:
      paths[name] = plots.plot_hyperparameter_law(fits[name], out / f'{name}.png')
  if 'data_constrained' in fits:
    paths['data_constrained'] = plots.plot_data_constrained(fits['data_constrained'],
                                                            out / 'data_constrained.png')
  return paths
