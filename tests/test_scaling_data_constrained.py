"""Muennighoff et al. (2023): the effective-data law recovers R* from repeated-data runs."""

import numpy as np
import pytest

from research.scaling import data_constrained as dc
from research.scaling import report
from research.scaling import run_kinds
from research.sweeps import synthetic

R_STAR = synthetic.R_STAR  # the paper's fitted R_D*, 15.4
START = {'a': [6.0], 'b': [6.0], 'e': [0.5], 'alpha': [0.3], 'beta': [0.3]}


def runs(seed=0):
  return synthetic.repeated_data_runs(seed)


def test_effective_data_closed_form():
  D, U = np.array([5e8, 1e9, 2e9, 1e12, 3e9]), np.array([1e9, 1e9, 1e9, 1e9, np.nan])
  d_eff = dc.effective_data(D, U, R_STAR)
  assert d_eff[0] == 5e8 and d_eff[1] == 1e9 and d_eff[4] == 3e9  # fresh data: D' = D
  # One repetition counts almost fully; endless repetition tends to U (1 + R*).
  assert d_eff[2] == pytest.approx(1e9 + 1e9 * R_STAR * (1 - np.exp(-1 / R_STAR)), rel=1e-12)
  assert 0.96 * 2e9 < d_eff[2] < 2e9
  assert d_eff[3] == pytest.approx(1e9 * (1 + R_STAR), rel=1e-6)
  np.testing.assert_array_equal(dc.repetitions(D, U), [0, 0, 1, 999, 0])


def test_fit_recovers_r_star_and_beats_the_chinchilla_form():
  N, D, U, loss = runs()
  fit = dc.fit_data_constrained(N, D, U, loss, grid=START, n_bootstrap=100, seed=1)
  print(f'R* = {fit.R_star:.3f} ci {fit.ci["R_star"]}, rms log residual '
        f'{fit.as_dict()["rms_log_residual"]:.4f} vs Chinchilla form '
        f'{fit.as_dict()["chinchilla_rms_log_residual"]:.4f}')
  low, high = fit.ci['R_star']
  assert low <= R_STAR <= high and fit.R_star == pytest.approx(R_STAR, rel=0.2)
  assert fit.base.alpha == pytest.approx(0.34, abs=0.04)  # stage 1: fresh runs only
  assert len(fit.N) == 20 and np.all(fit.D > fit.U)
  assert np.abs(fit.residuals()).max() < 0.012  # 4 noise sigmas
  # Counting repeated tokens as fresh overpredicts what many epochs buy.
  assert fit.chinchilla_objective > 10 * fit.objective
  assert np.all(fit.residuals(chinchilla_form=True)[fit.D / fit.U >= 16] > 0.01)


def test_fit_all_keeps_repeated_runs_out_of_the_other_fits():
  N, D, U, loss = runs(seed=2)
  results = {'N': N, 'D': D, 'N_non_embedding': 0.9 * N, 'final_eval_loss': loss,
             'unique_tokens': U, 'budget': np.full(len(N), np.nan)}
  fits = report.fit_all(results, None, n_bootstrap=10, parametric_grid=START)
  assert fits.data['repeated_runs'] == 20
  assert len(fits.fits['approach3'].N) == 20  # the fresh runs only
  assert fits.fits['data_constrained'].R_star == pytest.approx(R_STAR, rel=0.25)
  assert 'R_star' in report.format_table(fits)
  assert len(run_kinds.law_runs(results)['N']) == 20


@pytest.mark.parametrize('change,message', [
    (lambda N, D, U, L: (N, D, np.where(np.isnan(U), np.nan, -1.0), L), r'U\[20\] = -1.0'),
    (lambda N, D, U, L: (N, np.minimum(D, np.nan_to_num(U, nan=np.inf)), U, L),
     'at least 2 runs that repeat'),
    (lambda N, D, U, L: (N, D, U[:-1], L), 'same length'),
])
def test_bad_input(change, message):
  with pytest.raises(ValueError, match=message):
    dc.fit_data_constrained(*change(*runs()), grid=START, n_bootstrap=0)
