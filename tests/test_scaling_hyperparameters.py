"""The optimal learning rate and batch size against compute: power laws through per-budget optima
of a synthetic loss surface with known optima (DeepSeek LLM 2024's fitted laws)."""

import numpy as np
import pytest

from research.scaling import fit_hyperparameter_law
from research.scaling import hyperparameters
from research.scaling import report
from research.scaling import run_kinds
from research.sweeps import synthetic

LR_LAW, BATCH_LAW = synthetic.LR_LAW, synthetic.BATCH_LAW  # DeepSeek LLM (2024), eq. 1
BUDGETS = np.logspace(17, 20, 7)


def grid_runs(seed=0):
  return synthetic.hyperparameter_grid(BUDGETS, seed=seed)


@pytest.mark.parametrize('name,column,law', [('learning_rate', 1, LR_LAW),
                                             ('batch_size', 2, BATCH_LAW)])
def test_laws_recover_the_generating_exponents(name, column, law):
  runs = grid_runs()
  fit = fit_hyperparameter_law(runs[0], runs[column], runs[3], name=name, n_bootstrap=200,
                               seed=1)
  print(f'{name}: exponent {fit.exponent:.4f} ci {fit.ci["exponent"]}, coefficient '
        f'{fit.coefficient:.4g} ci {fit.ci["coefficient"]} (true {law})')
  assert fit.ci['exponent'][0] <= law[1] <= fit.ci['exponent'][1]
  assert fit.exponent == pytest.approx(law[1], abs=0.03)
  assert fit.ci['coefficient'][0] <= law[0] <= fit.ci['coefficient'][1]
  # The skew biases each parabola's vertex by the same factor at every budget: the exponent
  # is unbiased, the coefficient a little off.
  ratio = fit.optimum / (law[0] * BUDGETS ** law[1])
  assert 0.6 < ratio.mean() < 1.2 and np.std(np.log(ratio)) < 0.1
  assert fit.predict(1e21) == pytest.approx(fit.coefficient * 1e21 ** fit.exponent)
  low, high = fit.band([1e18])
  assert low[0] <= fit.predict(1e18) <= high[0]
  assert np.all(fit.bracketed) and len(fit.budgets_used) == 7
  assert len(fit.value) == 7 * (7 if name == 'learning_rate' else 5)  # best of the other axis


def test_akima_and_a_budget_the_learning_rates_do_not_bracket():
  C, lr, batch, loss = grid_runs(seed=3)
  low_end = (C == BUDGETS[0]) & (lr > 0.3118 * BUDGETS[0] ** -0.125 * 0.99)  # keep lr >= opt
  keep = ~((C == BUDGETS[0]) & ~low_end)
  with pytest.warns(UserWarning, match=r'budget C=1e\+17: the lowest loss is at the smallest '
                    r'learning rate trained \(learning_rate=0.00\d+\); to bracket it add runs of '
                    'about learning_rate=0.0'):
    fit = fit_hyperparameter_law(C[keep], lr[keep], loss[keep], method='akima', n_bootstrap=100)
  assert list(fit.used) == [False] + [True] * 6
  assert fit.ci['exponent'][0] <= LR_LAW[1] <= fit.ci['exponent'][1]
  assert fit.as_dict()['budgets'][0]['bracketed'] is False


def test_lowest_loss_per_point_keeps_the_best_of_the_other_axis():
  labels = np.array([1.0, 1.0, 1.0, 2.0])
  value = np.array([0.1, 0.1, 0.2, 0.1])
  loss = np.array([3.0, 2.5, 2.7, 2.0])
  assert list(hyperparameters.lowest_loss_per_point(labels, value, loss)) == [1, 2, 3]


@pytest.mark.parametrize('kwargs,message', [
    (dict(value=[-1e-3] * 9), r'learning_rate\[0\] = -0.001'),
    (dict(C=[1e18] * 9), 'learning rate law needs at least 2 budgets'),
    (dict(method='cubic'), "method='cubic'"),
])
def test_bad_input(kwargs, message):
  args = dict(C=np.repeat([1e18, 1e19, 1e20], 3), value=np.tile([1e-3, 3e-3, 1e-2], 3),
              loss=np.tile([3.0, 2.8, 2.9], 3), n_bootstrap=0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    fit_hyperparameter_law(**args)


def test_fit_all_fits_both_laws_from_a_hyperparameter_sweep_only():
  C, lr, batch, loss = grid_runs(seed=5)
  n = len(C)
  results = {'N': np.full(n, 1e7), 'D': C / 6e7, 'N_non_embedding': np.full(n, 9e6),
             'final_eval_loss': loss, 'budget': C, 'kind': np.array(['hyperparameter'] * n,
                                                                    dtype=object),
             'train.learning_rate': lr, 'train.batch_size': batch / 128,
             'data.seq_len': np.full(n, 128.0)}
  fits = report.fit_all(results, None, n_bootstrap=20)
  assert fits.fits['learning_rate_law'].exponent == pytest.approx(LR_LAW[1], abs=0.03)
  assert fits.fits['batch_size_law'].exponent == pytest.approx(BATCH_LAW[1], abs=0.03)
  assert 'approach2' not in fits.fits and 'approach3' not in fits.fits  # tuning runs only
  table = report.format_table(fits)
  assert 'Optimal learning rate against compute' in table and 'exponent' in table
  assert run_kinds.law_runs(results)['N'].size == 0


def test_fit_all_reads_a_transfer_sweep_as_the_optimum_against_width():
  # Standard: the best learning rate falls as 1 / width; muP: it stays at 3e-3.
  kind, width, lr, loss = synthetic.transfer_runs()
  n = len(kind)
  results = {'N': width ** 2 * 12.0, 'D': np.full(n, 1e7), 'N_non_embedding': width ** 2 * 12.0,
             'final_eval_loss': loss, 'kind': np.array(['mup_transfer'] * n, dtype=object),
             'model.d_model': width.astype(float), 'model.parametrization': kind.astype(object),
             'train.learning_rate': lr}
  fits = report.fit_all(results, None, n_bootstrap=50)
  standard, mup = fits.fits['lr_transfer_standard'], fits.fits['lr_transfer_mup']
  assert standard.against == 'width' and standard.exponent == pytest.approx(-1.0, abs=0.05)
  assert mup.exponent == pytest.approx(0.0, abs=0.05)
  assert mup.ci['exponent'][0] <= 0 <= mup.ci['exponent'][1]
  assert not standard.ci['exponent'][0] <= 0 <= standard.ci['exponent'][1]
  assert 'Optimal learning rate against width, muP' in report.format_table(fits)


def test_batch_size_advice_names_tokens_not_sequences():
  """A batch-size profile whose lowest loss is at its smallest batch: the advice asks for
  smaller batches in tokens per step (the law's unit), not for `batch_size=` in sequences."""
  C = np.repeat([1e10, 1e11], 4)
  tokens = np.tile([64.0, 128.0, 256.0, 512.0], 2)
  loss = np.array([4.0, 4.05, 4.15, 4.3, 3.5, 3.4, 3.5, 3.6])
  with pytest.warns(UserWarning, match=r'batch_tokens=64\); to bracket it add runs of about '
                                       r'batch_tokens=32'):
    with pytest.raises(ValueError, match='at least 2 budgets'):
      hyperparameters.fit_hyperparameter_law(C, tokens, loss, name='batch_size',
                                             skip_bad_budgets=True, n_bootstrap=10)
