"""Simulated IsoFLOP designs: cubic truths through measured profiles, size placement, equal-rise
spans, the simulated fits recovering the exponent that generated the profiles, and run costs."""

import numpy as np
import pytest

from research.sweeps import design_simulation as sim

EXPONENT, CURVATURE = 0.6, 0.12
BUDGETS = (1e10, 3e10, 1e11, 3e11)


def n_opt(budget):
  return 1e3 * (budget / 1e10) ** EXPONENT


def parabola_profiles(rng):
  """Runs of 7 sizes over a factor 8 per budget on loss = m(C) + k (ln N - ln N_opt(C))^2."""
  N, loss, C = [], [], []
  for budget in BUDGETS:
    sizes = n_opt(budget) * rng.uniform(0.9, 1.1) * 8.0 ** np.linspace(-0.5, 0.5, 7)
    N += list(sizes)
    loss += list(5.0 - 0.2 * np.log10(budget) + CURVATURE * np.log(sizes / n_opt(budget)) ** 2)
    C += [budget] * len(sizes)
  return np.array(N), np.array(loss), np.array(C)


def test_cubic_truths_pass_through_the_runs_and_keep_rising_beyond_them():
  rng = np.random.default_rng(0)
  N, loss, C = parabola_profiles(rng)
  skew = 0.03 * np.log(N / n_opt(C)) ** 3  # an asymmetric profile: a parabola would miss it
  truths = sim.profile_truths(N, loss + skew, C)
  assert sorted(truths) == list(BUDGETS)
  for n, l, c in zip(N, loss + skew, C):
    assert truths[c](n) == pytest.approx(l, abs=1e-9)
  small, large = N[C == 1e10].min(), N[C == 1e10].max()
  assert truths[1e10](small / 4) > truths[1e10](small) and truths[1e10](large * 4) > truths[1e10](large)
  with pytest.raises(ValueError, match='4 or more sizes'):
    sim.profile_truths(N[:3], loss[:3], C[:3])


def test_design_points_span_the_factor_around_each_centre_and_train_a_size_once():
  sizes = np.geomspace(1e3, 1e6, 200)
  points = sim.design_points({1e10: 1e4, 1e11: 5e4}, 5, {1e10: 4.0, 1e11: 9.0}, sizes)
  at = {c: sorted(n for b, n in points if b == c) for c in (1e10, 1e11)}
  assert len(at[1e10]) == len(at[1e11]) == 5
  assert at[1e10][-1] / at[1e10][0] == pytest.approx(4.0, rel=0.08)
  assert at[1e11][-1] / at[1e11][0] == pytest.approx(9.0, rel=0.08)
  coarse = sim.design_points({1e10: 1e4}, 7, {1e10: 1.5}, [8e3, 1.2e4])  # 7 targets, 2 sizes
  assert sorted(n for _, n in coarse) == [8e3, 1.2e4]


def test_equal_rise_spans_follow_the_curvature():
  rng = np.random.default_rng(1)
  N, loss, C = parabola_profiles(rng)
  truths = sim.profile_truths(N, loss, C)
  spans = sim.equal_rise_spans(truths, {c: n_opt(c) for c in BUDGETS}, rise=0.05)
  for span in spans.values():  # loss = k x^2 reaches 0.05 at x = +-sqrt(0.05 / k)
    assert span == pytest.approx(np.exp(2 * np.sqrt(0.05 / CURVATURE)), rel=1e-3)


def test_simulated_fits_recover_the_generating_exponent():
  rng = np.random.default_rng(2)
  N, loss, C = parabola_profiles(rng)
  truths = sim.profile_truths(N, loss, C)
  points = sim.design_points({c: n_opt(c) for c in BUDGETS}, 6, dict.fromkeys(BUDGETS, 6.0),
                             np.geomspace(100, 1e6, 400))
  result = sim.simulate(points, truths, noise=0.002, replicates=2, n_bootstrap=30)
  assert np.all(np.abs(result.a2 - EXPONENT) < 0.05), result.a2
  assert np.all((result.approach2 > 0) & (result.approach2 < 0.2)), result.approach2
  noisier = sim.simulate(points, truths, noise=0.02, replicates=2, n_bootstrap=30)
  assert np.nanmean(noisier.approach2) > np.mean(result.approach2)


def test_run_costs_recover_a_linear_cost_model():
  rng = np.random.default_rng(3)
  N = rng.uniform(1e4, 2e5, 12)
  steps = rng.integers(200, 3000, 12).astype(float)
  loop = steps * (0.04 + 3e-7 * N)
  fixed, a, b = sim.run_costs(N, steps, loop, loop + 20.0)
  assert (fixed, a, b) == pytest.approx((20.0, 0.04, 3e-7), rel=1e-6)
  points = [(1e11, 2e4), (1e11, 4e4)]
  expected = sum(20.0 + c / (6 * n) / 2048 * (0.04 + 3e-7 * n) for c, n in points) / 2
  assert sim.predicted_seconds(points, (fixed, a, b), 2048, lanes=2) == pytest.approx(expected)
