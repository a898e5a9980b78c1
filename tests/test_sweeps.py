"""Sweep generators: IsoFLOP grids spend their budget (6 N D = C), steps and schedules match each
run's tokens, Kaplan sweeps hold D or N fixed, the ladder follows its law, sweep files load."""

import math
import pathlib

import pytest
from research.config import base_config, load_python_file
from research.model import counting
from research.sweeps import generators, plan, sizing, table
from research.sweeps import moe as moe_sweeps
from research.run_dir import config_hash
from research.train.schedules import make_schedule
from research.train.validate import validate_config

SWEEP_FILES = sorted((pathlib.Path(__file__).parents[1] / 'configs' / 'sweeps').glob('*.py'))


def small_base():
  c = base_config()
  c.model.update(vocab_size=512, max_seq_len=64)
  c.data.seq_len = 64
  c.train.update(batch_size=8, warmup_steps=100)
  return c


def tokens_per_step(c):
  return c.train.batch_size * c.data.seq_len


def total(c):
  return counting.predict_param_counts(c.model).total


def check_schedule(c):
  """Warmup capped at 10% and the cosine reaching its floor at exactly num_steps."""
  t = c.train
  assert 0 <= t.warmup_steps <= 0.1 * t.num_steps
  schedule = make_schedule(t)
  if t.schedule == 'constant':  # the parent of cooldown branches: at its peak to the end
    assert float(schedule(t.num_steps)) == pytest.approx(t.learning_rate)
    return
  assert float(schedule(t.num_steps)) == pytest.approx(t.learning_rate * t.min_lr_ratio)
  assert float(schedule(t.num_steps - 1)) > t.learning_rate * t.min_lr_ratio


BUDGETS = (4e11, 1.6e12, 6.4e12)


@pytest.fixture(scope='module')
def isoflop_runs():
  return generators.isoflop_sweep(small_base(), BUDGETS, num_sizes=7, span=8.0, head_dim=16,
                              aspect_ratio=16.0)


def test_isoflop_grid_spends_each_budget(isoflop_runs):
  by_budget = {}
  for name, c in isoflop_runs:
    assert c.sweep.budget in BUDGETS and c.sweep.kind == 'isoflop' and c.sweep.label == name
    d = c.train.num_steps * tokens_per_step(c)
    assert c.sweep.tokens == d
    # C = 6 N D with N total, up to rounding D to whole steps (half a step at most).
    assert abs(6 * total(c) * d / c.sweep.budget - 1) <= 0.5 / c.train.num_steps + 1e-9
    assert c.train.num_steps == round(c.sweep.budget / (6 * total(c)) / tokens_per_step(c))
    check_schedule(c)
    validate_config(c, num_devices=1)
    by_budget.setdefault(c.sweep.budget, []).append(total(c))
  for budget, sizes in by_budget.items():
    assert 5 <= len(sizes) <= 7 and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    guess = generators.chinchilla_guess()(budget)
    # log-spaced around the guess, spanning about a factor 8
    assert min(sizes) < guess < max(sizes)
    assert 4 < max(sizes) / min(sizes) < 12


def test_run_configs_differ_only_where_the_sweep_says(isoflop_runs):
  base = small_base()
  for _, c in isoflop_runs:
    assert c.data.to_dict() == base.data.to_dict()
    for field in ('learning_rate', 'batch_size', 'b2', 'weight_decay', 'schedule', 'min_lr_ratio'):
      assert c.train[field] == base.train[field]
    assert c.model.vocab_size == base.model.vocab_size
  assert 'sweep' not in base
  assert len({config_hash(c) for _, c in isoflop_runs}) == len(isoflop_runs)


def test_isoflop_with_a_family_table():
  runs = generators.isoflop_sweep(small_base(), [1e12], num_sizes=5, span=8.0,
                              shapes=sizing.TINY_SHAPES)
  shapes = {(s.d_model, s.num_layers) for s in sizing.TINY_SHAPES}
  assert 3 <= len(runs) <= 5
  for _, c in runs:
    assert (c.model.d_model, c.model.num_layers) in shapes
    assert abs(6 * total(c) * c.sweep.tokens / 1e12 - 1) <= 0.5 / c.train.num_steps + 1e-9


def test_isoflop_rejects_too_few_steps():
  with pytest.raises(ValueError, match=r'budget C=1e\+10: .* trains only \d+ steps'):
    generators.isoflop_sweep(small_base(), [1e10], head_dim=16, guess=lambda c: 1e6)


def test_kaplan_model_size_sweep_fixes_data():
  targets = (5e4, 2e5, 8e5)
  runs = generators.kaplan_model_size_sweep(small_base(), targets, 1e6, head_dim=16,
                                            aspect_ratio=32)
  assert len(runs) == 3
  for (name, c), target in zip(runs, targets):
    n = counting.predict_param_counts(c.model).non_embedding
    assert abs(n / target - 1) <= 0.05
    assert c.train.num_steps == round(1e6 / tokens_per_step(c))
    assert c.sweep.budget is None and c.sweep.param_kind == 'non_embedding'
    check_schedule(c)


def test_kaplan_data_size_sweep_fixes_the_model():
  base = small_base()
  tokens = (2e5, 8e5, 3.2e6)
  runs = generators.kaplan_data_size_sweep(base, tokens)
  assert [c.train.num_steps for _, c in runs] == [round(d / tokens_per_step(base)) for d in tokens]
  assert all(c.model.to_dict() == base.model.to_dict() for _, c in runs)
  sized = generators.kaplan_data_size_sweep(base, tokens, params=1e5, head_dim=16)
  assert len({config_hash(c.model) for _, c in sized}) == 1
  for _, c in runs + sized:
    check_schedule(c)


def test_compute_optimal_ladder_follows_the_law():
  law = generators.power_law_allocation(a=0.5, n_coefficient=1 / math.sqrt(6 * 20))  # D = 20 N
  budgets = (1e12, 1e13, 1e14)
  runs = generators.compute_optimal_ladder(small_base(), budgets, law, head_dim=16)
  assert len(runs) == 3
  for (_, c), budget in zip(runs, budgets):
    n_opt, d_opt = law(budget)
    assert abs(total(c) / n_opt - 1) <= 0.05
    assert abs(6 * total(c) * c.sweep.tokens / budget - 1) <= 0.5 / c.train.num_steps + 1e-9
    check_schedule(c)
  both = generators.power_law_allocation(0.5, 0.1, b=0.5, d_coefficient=1.0)
  assert both(1e12) == pytest.approx((1e5, 1e6))
  custom = generators.compute_optimal_ladder(small_base(), [1e12], lambda c: (2e5, c / 1.2e6),
                                         shapes=sizing.TINY_SHAPES)
  assert len(custom) == 1 and custom[0][1].sweep.kind == 'compute_optimal'


def test_law_arguments_are_checked():
  with pytest.raises(ValueError, match='d_coefficient'):
    generators.power_law_allocation(0.5, 1.0, b=0.5)
  with pytest.raises(ValueError, match='budgets'):
    generators.isoflop_sweep(small_base(), [])
  with pytest.raises(ValueError, match='num_sizes'):
    generators.isoflop_sweep(small_base(), [1e12], num_sizes=0)


@pytest.mark.parametrize('path', SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_files_give_valid_runs(path):
  runs = plan.load_sweep(path)
  assert runs and len({name for name, _ in runs}) == len(runs)
  assert len({config_hash(c) for _, c in runs}) == len(runs)
  for _, c in runs:
    validate_config(c, num_devices=1)
    assert c.sweep.name and c.sweep.label
    check_schedule(c)


def test_quickstart_is_a_small_isoflop_grid():
  path = next(p for p in SWEEP_FILES if p.stem == 'quickstart')
  runs = plan.load_sweep(path)
  budgets = sorted({c.sweep.budget for _, c in runs})
  assert budgets == [1e11, 2.3e11, 5.2e11, 1.2e12] and len(runs) == 23
  assert all(c.data.corpus == 'default' for _, c in runs)
  measured_law = load_python_file(path).measured_law  # through the previous design's minima
  assert [round(measured_law(c)) for c in (1e11, 3.5e11, 1.2e12)] == [12600, 33600, 77100]
  for budget in budgets:  # 5-6 sizes, reaching past the measured N_opt by 1.8x on both sides
    sizes = sorted(total(c) for _, c in runs if c.sweep.budget == budget)
    centre = measured_law(budget)
    assert len(sizes) >= 5 and sizes[0] < centre / 1.8 and sizes[-1] > centre * 1.8, (budget, sizes)
  # the largest model stays tiny: a CPU sweep
  assert max(total(c) for _, c in runs) < 1e6


def test_moe_sweep_pairs_dense_and_moe_at_equal_active_parameters_and_tokens(tmp_path):
  """configs/sweeps/moe.py: per budget one dense run and one per (E, k), of one shape and one
  token count; an MoE token uses the dense weights plus the router (d_model x E per layer) and
  the output biases of its k - 1 further experts; results.csv rows give N = active, N_total and
  num_experts, and C = 6 N D within the routers' share of the budget."""
  path = next(p for p in SWEEP_FILES if p.stem == 'moe')
  runs = plan.load_sweep(path)
  budgets = sorted({c.sweep.budget for _, c in runs})
  assert len(budgets) == 3 and len(runs) == 9
  for budget in budgets:
    group = [c for _, c in runs if c.sweep.budget == budget]
    dense = [c for c in group if not c.model.get('num_experts')]
    assert len(dense) == 1 and len(group) == 3
    dense = dense[0]
    n_dense = counting.predict_param_counts(dense.model).total
    assert counting.predict_param_counts(dense.model, active=True).total == n_dense
    assert abs(6 * n_dense * dense.sweep.tokens / budget - 1) <= 0.5 / dense.train.num_steps
    for c in group:
      assert c.train.num_steps == dense.train.num_steps and c.sweep.tokens == dense.sweep.tokens
      for field in ('d_model', 'num_layers', 'num_heads', 'd_ff'):
        assert c.model[field] == dense.model[field]
      if c is dense:
        continue
      m = c.model
      assert m.moe_d_ff * m.experts_per_token == m.d_ff
      extra = m.num_layers * m.d_model * (m.num_experts + (m.experts_per_token - 1) * m.use_bias)
      assert counting.predict_param_counts(m, active=True).total == n_dense + extra
      assert counting.predict_param_counts(m).total > 1.9 * n_dense
  workdir = tmp_path / 'moe'
  for run in plan.resolve_runs(runs, workdir, 'moe'):
    plan.write_run_files(run)
    row = table.run_row(run.run_dir)
    m = run.config.model
    assert row['N'] == counting.predict_param_counts(m, active=True).total
    assert row['N_total'] == counting.predict_param_counts(m).total
    assert row['num_experts'] == m.get('num_experts', 0)
    assert row['kind'] == 'moe_vs_dense' and row['status'] == 'pending'
    assert 1 - 0.5 / run.config.train.num_steps <= row['C'] / row['budget'] < 1.02


def test_moe_variant_refuses_experts_that_do_not_split_the_feed_forward():
  model = small_base().model
  model.update(d_ff=30)
  with pytest.raises(ValueError, match=r'experts=\(4, 4\): model.d_ff=30'):
    moe_sweeps.moe_variant(model, 4, 4)
  with pytest.raises(ValueError, match=r'experts=\(2, 3\): needs 1 <= k <= E'):
    moe_sweeps.moe_variant(model, 2, 3)
