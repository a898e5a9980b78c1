"""The logistic emergence fit recovers a known threshold from noisy accuracies."""

import numpy as np
import pytest

from research.scaling import fit_emergence
from research.sweeps import synthetic

TRUTH = synthetic.ACCURACY  # floor 0.25, ceiling 0.85, threshold 3e7, k 2 per e-fold


def noisy_accuracies(seed, n=24):
  N = np.logspace(6, 9, n)
  return N, synthetic.accuracy(N, np.random.default_rng(seed), noise=0.01)


def test_threshold_is_recovered_with_free_floor_and_ceiling():
  N, acc = noisy_accuracies(seed=41)
  fit = fit_emergence(N, acc, n_bootstrap=300, seed=1)
  print(f'emergence: threshold {fit.threshold_N:.4g} (3e7) k {fit.k:.3f} (2) floor '
        f'{fit.floor:.3f} ceiling {fit.ceiling:.3f} ci {fit.ci}')
  for name in ('threshold_N', 'k', 'floor', 'ceiling'):
    low, high = fit.ci[name]
    assert low <= TRUTH[name] <= high, name
  assert fit.threshold_N == pytest.approx(TRUTH['threshold_N'], rel=0.1)
  assert fit.within_range
  assert fit.predict(fit.threshold_N) == pytest.approx((fit.floor + fit.ceiling) / 2)


def test_fixed_floor_stays_fixed():
  N, acc = noisy_accuracies(seed=42)
  fit = fit_emergence(N, acc, floor=0.25, n_bootstrap=200, seed=2)
  assert fit.floor == 0.25 and np.all(fit.samples['floor'] == 0.25)
  assert fit.ci['threshold_N'][0] <= TRUTH['threshold_N'] <= fit.ci['threshold_N'][1]


@pytest.mark.parametrize('kwargs,message', [
    (dict(N=[1e6, 1e7, 1e8, 1e9], accuracy=[0.2, 0.3, 0.8, 0.9]), 'more than 4 distinct'),
    (dict(accuracy=[0.1] * 3), 'same length'),
    (dict(floor=0.9, ceiling=0.2), 'floor=0.9 must be below ceiling=0.2'),
    (dict(floor=float('nan')), 'floor=nan'),
    (dict(N=[0, 1, 2, 3, 4, 5]), r'N\[0\] = 0.0'),
])
def test_bad_input(kwargs, message):
  args = dict(N=np.logspace(6, 9, 6), accuracy=[0.25, 0.26, 0.4, 0.7, 0.84, 0.85], n_bootstrap=0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    fit_emergence(**args)
