"""Figures of the scaling-law fits, each written to a PNG whose path is returned.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so they work headless and
leave a notebook's own backend alone. Shaded bands are the fits' bootstrap intervals.
"""

from __future__ import annotations

import pathlib

import numpy as np
from etils import epath
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from research.scaling import fit_utils

_COLOURS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple', 'tab:brown')


def _figure(ncols: int = 1, width: float = 6.0, height: float = 4.5):
  """A figure on its own Agg canvas and its row of `ncols` axes."""
  fig = Figure(figsize=(width * ncols, height), layout='constrained')
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, ncols, squeeze=False)[0]
  return fig, axes


def _save(fig, path) -> pathlib.Path:
  """Writes the PNG (making its directory) and returns its path; a URI (gs://bucket/fits/x.png)
  is written as one object through `etils.epath`."""
  if '://' in str(path):
    path = epath.Path(str(path))
    with path.open('wb') as f:
      fig.savefig(f, dpi=110, format=path.suffix[1:])
    return path
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  return path


def _log_loss_axis(ax) -> None:
  """Log-scaled loss axis labelled with plain numbers."""
  ax.set_yscale('log')
  ax.yaxis.set_major_formatter(FormatStrFormatter('%.3g'))
  ax.yaxis.set_minor_formatter(FormatStrFormatter('%.3g'))
  ax.set_ylabel('loss')


def _geomspace(values, pad: float = 1.5, num: int = 200) -> np.ndarray:
  """Log-spaced points spanning `values`, widened by `pad` at each end."""
  values = np.asarray(values, dtype=np.float64)
  return np.geomspace(values.min() / pad, values.max() * pad, num)


def plot_isoflop(fit, path) -> pathlib.Path:
  """IsoFLOP profiles (Approach 2): final loss against N per budget, the fitted profiles (parabola
  or Akima) and their minima; a budget left out of the power law (minimum not bracketed) is
  drawn dashed with a hollow star."""
  fig, (ax,) = _figure()
  colours = colormaps['viridis'](np.linspace(0, 0.9, len(fit.budgets)))
  for budget, minimum, n_opt, loss_opt, used, colour in zip(
      fit.budgets, fit.minima, fit.N_opt, fit.loss_opt, fit.used, colours):
    members = fit.C == budget
    label = f'C = {budget:.2g}' + ('' if used else ' (not bracketed: left out)')
    ax.scatter(fit.N[members], fit.loss[members], color=colour, s=18, label=label)
    if minimum.method == 'parabola':
      grid = _geomspace(np.append(fit.N[members], n_opt), pad=1.2)
    else:
      grid = np.geomspace(fit.N[members].min(), fit.N[members].max(), 200)
    ax.plot(grid, minimum.predict(np.log(grid)), color=colour, lw=1, ls='-' if used else '--')
    ax.scatter([n_opt], [loss_opt], marker='*', s=120, zorder=3,
               facecolors=[colour] if used else 'none', edgecolors='black' if used else [colour])
  ax.set_xscale('log')
  ax.set_xlabel('parameters N')
  ax.set_ylabel('final loss')
  ax.set_title(f'IsoFLOP profiles ({fit.method}): N_opt ∝ C^{fit.a:.3f}, '
               f'{len(fit.budgets_used)} of {len(fit.budgets)} budgets used')
  ax.legend(fontsize=7)
  return _save(fig, path)


def _frontier_points(fit):
  """(C, N_opt, D_opt, marker style) of the optima a frontier fit was drawn through, if any."""
  if hasattr(fit, 'budgets'):
    used = fit.used  # the budgets the power law went through
    return fit.budgets[used], fit.N_opt[used], fit.D_opt[used], {'marker': 'D', 's': 40,
                                                                 'edgecolor': 'black',
                                                                 'zorder': 3}
  if hasattr(fit, 'flops'):
    step = max(1, len(fit.flops) // 60)
    return fit.flops[::step], fit.N_opt[::step], fit.D_opt[::step], {'s': 6}
  return None


def plot_frontier(fits: dict, path, flops=None) -> pathlib.Path:
  """Compute-optimal N_opt(C) and D_opt(C): each fit's power law, its band and its points.

  `fits` maps a label (e.g. 'Approach 2') to any fit with `optimal_allocation` and
  `allocation_band`; `flops` sets the range drawn (default: the fits' data, padded 10x).
  """
  if not fits:
    raise ValueError('fits: nothing to plot; pass at least one compute-optimal fit')
  if flops is None:
    seen = [p[0] for p in map(_frontier_points, fits.values()) if p is not None]
    seen += [6 * f.N * f.D for f in fits.values() if hasattr(f, 'D') and hasattr(f, 'N')]
    seen = np.concatenate(seen) if seen else np.array([1e18, 1e22])
    flops = np.geomspace(seen.min() / 10, seen.max() * 10, 100)
  flops = fit_utils.as_array('flops', flops, positive=True)
  fig, (ax_n, ax_d) = _figure(ncols=2)
  for (label, fit), colour in zip(fits.items(), _COLOURS):
    n, d = fit.optimal_allocation(flops)
    bands = fit.allocation_band(flops)
    for ax, line, key in ((ax_n, n, 'N'), (ax_d, d, 'D')):
      exponent = fit.a if key == 'N' else fit.b
      ax.plot(flops, line, color=colour, label=f'{label}: ∝ C^{exponent:.3f}')
      low, high = bands[key]
      if np.all(np.isfinite(low)):
        ax.fill_between(flops, low, high, color=colour, alpha=0.2, lw=0)
    points = _frontier_points(fit)
    if points is not None:
      ax_n.scatter(points[0], points[1], color=colour, **points[3])
      ax_d.scatter(points[0], points[2], color=colour, **points[3])
  for ax, name in ((ax_n, 'N_opt (parameters)'), (ax_d, 'D_opt (tokens)')):
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('training FLOPs C')
    ax.set_ylabel(name)
    ax.legend(fontsize=8)
  ax_n.set_title('compute-optimal model size')
  ax_d.set_title('compute-optimal tokens')
  return _save(fig, path)


def plot_power_law(fit, path) -> pathlib.Path:
  """Loss against N, D or C with a Kaplan power law (`kaplan.PowerLawFit`) and its band."""
  fig, (ax,) = _figure()
  x = _geomspace(fit.x)
  ax.scatter(fit.x, fit.loss, s=14, color='tab:blue', label='runs fitted')
  ax.plot(x, fit.predict(x), color='black',
          label=f'({fit.variable}_c/{fit.variable})^{fit.alpha:.3f}'
          + (f' + {fit.E:.3f}' if fit.irreducible else ''))
  s = fit.samples
  if len(s['alpha']):
    values = s['E'][:, None] + (s['x_c'][:, None] / x[None]) ** s['alpha'][:, None]
    low, high = fit_utils.band(values, fit.confidence)
    ax.fill_between(x, low, high, color='black', alpha=0.15, lw=0)
  names = {'N': 'parameters N', 'D': 'tokens D', 'C': 'training FLOPs C'}
  ax.set_xscale('log')
  _log_loss_axis(ax)
  ax.set_xlabel(names.get(fit.variable, fit.variable))
  ax.set_title(f'L({fit.variable}), Kaplan et al. (2020) form')
  ax.legend(fontsize=8)
  return _save(fig, path)


def plot_joint(fit, path) -> pathlib.Path:
  """Loss against D for each model size with Kaplan's L(N, D) (`kaplan.JointFit`)."""
  fig, (ax,) = _figure()
  sizes = np.unique(fit.N)
  colours = colormaps['viridis'](np.linspace(0, 0.9, len(sizes)))
  for n, colour in zip(sizes, colours):
    members = fit.N == n
    ax.scatter(fit.D[members], fit.loss[members], color=colour, s=12)
    d = _geomspace(fit.D[members], pad=1.2, num=50)
    ax.plot(d, fit.predict(np.full_like(d, n), d), color=colour, lw=1, label=f'N = {n:.2g}')
  ax.set_xscale('log')
  _log_loss_axis(ax)
  ax.set_xlabel('tokens D')
  ax.set_title(f'L(N, D): alpha_N = {fit.alpha_N:.3f}, alpha_D = {fit.alpha_D:.3f}')
  if len(sizes) <= 12:
    ax.legend(fontsize=7)
  return _save(fig, path)


def plot_residuals(fit, path) -> pathlib.Path:
  """Residuals log L - log L_hat of the parametric fit (Approach 3) against compute and against
  tokens per parameter, coloured by model size."""
  fig, (ax_c, ax_r) = _figure(ncols=2)
  residuals = fit.residuals()
  colour = np.log10(fit.N)
  for ax, x, name in ((ax_c, 6 * fit.N * fit.D, 'training FLOPs C = 6ND'),
                      (ax_r, fit.D / fit.N, 'tokens per parameter D/N')):
    points = ax.scatter(x, residuals, c=colour, cmap='viridis', s=14)
    ax.axhline(0, color='black', lw=0.8)
    for edge in (-1, 1):
      ax.axhline(edge * 1e-3, color='grey', lw=0.5, ls=':')
    ax.set_xscale('log')
    ax.set_xlabel(name)
    ax.set_ylabel('log L - log L_hat')
  fig.colorbar(points, ax=ax_r, label='log10 N')
  ax_c.set_title('Approach 3 residuals (Huber delta = 1e-3 dotted)')
  return _save(fig, path)


def plot_envelope(fit, path) -> pathlib.Path:
  """Every smoothed training curve against FLOPs and the lower envelope (Approach 1)."""
  fig, (ax,) = _figure()
  for n, flops, loss in fit.curves:
    ax.plot(flops, loss, color='grey', lw=0.6, alpha=0.6)
  ax.plot(fit.flops, fit.loss_opt, color='tab:red', lw=2, label='envelope')
  ax.set_xscale('log')
  _log_loss_axis(ax)
  ax.set_xlabel('training FLOPs C = 6 N tokens')
  ax.set_ylabel('training loss (smoothed)')
  ax.set_title(f'Training-curve envelope: N_opt ∝ C^{fit.a:.3f}')
  ax.legend(fontsize=8)
  return _save(fig, path)


def plot_emergence(fit, path) -> pathlib.Path:
  """Accuracy against N with the fitted logistic and its threshold."""
  fig, (ax,) = _figure()
  n = _geomspace(fit.N)
  ax.scatter(fit.N, fit.accuracy, s=14, color='tab:blue', label='models')
  ax.plot(n, fit.predict(n), color='black', label='logistic fit')
  low, high = fit.ci['threshold_N']
  if np.isfinite(low):
    ax.axvspan(low, high, color='tab:orange', alpha=0.2, lw=0)
  ax.axvline(fit.threshold_N, color='tab:orange', label=f'threshold N = {fit.threshold_N:.3g}')
  ax.set_xscale('log')
  ax.set_xlabel('parameters N')
  ax.set_ylabel('accuracy')
  ax.legend(fontsize=8)
  return _save(fig, path)


def plot_data_constrained(fit, path) -> pathlib.Path:
  """Loss against epochs (D / U) of the repeated runs, one colour per (N, U), with the
  effective-data law (solid) and the Chinchilla form that counts every token as fresh (dashed)."""
  fig, (ax,) = _figure()
  groups = sorted({(n, u) for n, u in zip(fit.N, fit.U)})
  colours = colormaps['viridis'](np.linspace(0, 0.9, len(groups)))
  for (n, u), colour in zip(groups, colours):
    members = (fit.N == n) & (fit.U == u)
    epochs = fit.D[members] / u
    ax.scatter(epochs, fit.loss[members], color=colour, s=18,
               label=f'N = {n:.3g}, U = {u:.3g}')
    grid = np.geomspace(1.0, epochs.max() * 1.2, 100)
    ax.plot(grid, fit.predict(np.full_like(grid, n), grid * u, np.full_like(grid, u)),
            color=colour, lw=1)
    ax.plot(grid, fit.predict_chinchilla(np.full_like(grid, n), grid * u), color=colour, lw=1,
            ls='--')
  ax.set_xscale('log')
  _log_loss_axis(ax)
  ax.set_xlabel('epochs D / U')
  low, high = fit.ci['R_star']
  interval = f' [{low:.3g}, {high:.3g}]' if np.isfinite(low) else ''
  ax.set_title(f"Repeated data: R* = {fit.R_star:.3g}{interval} (solid: D', dashed: D)")
  ax.legend(fontsize=7)
  return _save(fig, path)


def plot_hyperparameter_law(fit, path) -> pathlib.Path:
  """Left: loss against the hyperparameter per budget, the fitted profiles and their minima.
  Right: the optimum against compute with the power law and its band (`HyperparameterLaw`)."""
  fig, (ax_p, ax_c) = _figure(ncols=2)
  colours = colormaps['viridis'](np.linspace(0, 0.9, len(fit.budgets)))
  label = fit.name.replace('_', ' ')
  axis = {'batch_size': 'batch size (tokens per step)'}.get(fit.name, label)
  against = {'C': 'training FLOPs C'}.get(fit.against, fit.against)
  for budget, minimum, best, loss_opt, used, colour in zip(
      fit.budgets, fit.minima, fit.optimum, fit.loss_opt, fit.used, colours):
    members = fit.C == budget
    ax_p.scatter(fit.value[members], fit.loss[members], color=colour, s=18,
                 label=f'{fit.against} = {budget:.3g}' + ('' if used else ' (not bracketed)'))
    grid = np.geomspace(fit.value[members].min(), fit.value[members].max(), 100)
    ax_p.plot(grid, minimum.predict(np.log(grid)), color=colour, lw=1, ls='-' if used else '--')
    ax_p.scatter([best], [loss_opt], marker='*', s=120, zorder=3,
                 facecolors=[colour] if used else 'none', edgecolors='black' if used else [colour])
  ax_p.set_xscale('log')
  ax_p.set_xlabel(axis)
  ax_p.set_ylabel('final loss')
  ax_p.set_title(f'loss against {label} per {fit.against} ({fit.method})')
  ax_p.legend(fontsize=7)
  flops = _geomspace(fit.budgets, pad=2.0)
  ax_c.plot(flops, fit.predict(flops), color='black',
            label=f'{label}_opt = {fit.coefficient:.3g} {fit.against}^{fit.exponent:.3f}')
  low, high = fit.band(flops)
  if np.all(np.isfinite(low)):
    ax_c.fill_between(flops, low, high, color='black', alpha=0.15, lw=0,
                      label=f'{100 * fit.confidence:.0f}% band')
  ax_c.scatter(fit.budgets[fit.used], fit.optimum[fit.used], color='tab:blue', s=30, zorder=3,
               label=f'optimum per {fit.against}')
  if (~fit.used).any():
    ax_c.scatter(fit.budgets[~fit.used], fit.optimum[~fit.used], facecolors='none',
                 edgecolors='tab:blue', s=30, zorder=3, label='not bracketed (left out)')
  ax_c.set_xscale('log')
  ax_c.set_yscale('log')
  ax_c.set_xlabel(against)
  ax_c.set_ylabel(f'optimal {axis}')
  ax_c.set_title(f'{label} law')
  ax_c.legend(fontsize=7)
  return _save(fig, path)
