"""Sweep generators beyond Chinchilla: cooldown branches of constant-LR runs (their plan, identity
and order of execution), data-constrained runs, and learning-rate / batch-size grids."""

import collections
import math

import pytest

from research import run_dir as run_dir_lib
from research.config import base_config
from research.model import counting
from research.sweeps import cooldown, data_constrained, generators, plan, runner, sizing, table
from research.sweeps import transfer, tuning
from research.train.schedules import make_schedule
from research.train.validate import validate_config

BUDGETS = (4e11, 1.2e12)


def small_base():
  c = base_config()
  c.model.update(vocab_size=512, max_seq_len=64)
  c.data.seq_len = 64
  c.train.update(batch_size=8, warmup_steps=20)
  return c


def isoflop_kwargs():
  return dict(num_sizes=4, span=4.0, shapes=sizing.TINY_SHAPES,
              guess=generators.chinchilla_guess(40.0))


@pytest.fixture(scope='module')
def cooldown_runs():
  return cooldown.cooldown_sweep(small_base(), BUDGETS, fraction=0.2, **isoflop_kwargs())


def test_branches_sit_at_the_isoflop_points_and_parents_reach_every_branch(cooldown_runs):
  cosine = {c.sweep.label: c for _, c in generators.isoflop_sweep(small_base(), BUDGETS,
                                                                  **isoflop_kwargs())}
  parents = {label: c for label, c in cooldown_runs if c.sweep.kind == cooldown.STABLE_KIND}
  branches = [(label, c) for label, c in cooldown_runs if c.sweep.kind == cooldown.BRANCH_KIND]
  assert len(branches) == len(cosine)  # one branch per IsoFLOP point, nothing else
  for label, c in branches:
    twin = cosine[label.removesuffix('-cooldown')]
    assert c.model == twin.model and c.train.num_steps == twin.train.num_steps
    assert c.sweep.budget == twin.sweep.budget and c.train.schedule == 'wsd'
    parent = parents[c.sweep.parent]
    assert parent.model == c.model and parent.train.schedule == 'constant'
    start = c.train.init_from.step
    assert start in parent.train.save_steps and start <= parent.train.num_steps
    assert c.train.num_steps - start == max(1, round(0.2 * c.train.num_steps))
    assert c.train.warmup_steps == parent.train.warmup_steps
    validate_config(c, num_devices=1)  # (its init_from.run_dir is filled in by the plan)
    # The branch's schedule is its parent's up to the branch point, then cools to the floor.
    p, b = make_schedule(parent.train), make_schedule(c.train)
    assert float(b(start - 1)) == pytest.approx(float(p(start - 1)))
    assert float(b(c.train.num_steps)) == pytest.approx(c.train.learning_rate * 0.1)
  # Compute: each size's constant run plus its cooldowns, against one cosine run per point.
  steps = lambda runs: sum(c.train.num_steps - c.train.init_from.step for c in runs)
  cosine_steps = sum(c.train.num_steps for c in cosine.values())
  wsd_steps = steps(list(parents.values())) + steps([c for _, c in branches])
  by_size = collections.defaultdict(list)
  for c in cosine.values():
    by_size[c.sweep.label.split('-')[1]].append(c.train.num_steps)
  cool = lambda s: max(1, round(0.2 * s))
  assert wsd_steps == sum(max(s - cool(s) for s in sizes) + sum(cool(s) for s in sizes)
                          for sizes in by_size.values())
  assert wsd_steps < cosine_steps


def test_a_branchs_identity_includes_its_parent(cooldown_runs, tmp_path):
  runs = {r.label: r for r in plan.resolve_runs(cooldown_runs, tmp_path)}
  branch = next(r for r in runs.values() if r.config.sweep.kind == cooldown.BRANCH_KIND)
  parent = runs[branch.config.sweep.parent]
  assert branch.config.train.init_from.run_dir == str(parent.run_dir)
  assert branch.config.train.init_from.run_id == parent.run_id
  changed = [(label, c.copy_and_resolve_references()) for label, c in cooldown_runs]
  for label, c in changed:
    if label == parent.label:
      c.train.learning_rate = 1e-3
  again = {r.label: r for r in plan.resolve_runs(changed, tmp_path)}
  assert again[branch.label].run_id != branch.run_id  # a new parent makes a new branch
  assert all(again[l].run_id == r.run_id for l, r in runs.items()
             if r.config.sweep.get('parent') not in (parent.label,) and l != parent.label)


def test_plan_refuses_a_missing_or_branched_parent(cooldown_runs, tmp_path):
  label, branch = next((l, c) for l, c in cooldown_runs if c.sweep.kind == cooldown.BRANCH_KIND)
  orphan = branch.copy_and_resolve_references()
  orphan.sweep.parent = 'nobody'
  with pytest.raises(ValueError, match=f"run '{label}': its sweep.parent 'nobody' is not a run"):
    plan.resolve_runs([(label, orphan)], tmp_path)
  nested = branch.copy_and_resolve_references()
  nested.sweep.parent = label
  with pytest.raises(ValueError, match='is itself a branch'):
    plan.resolve_runs(list(cooldown_runs) + [('nested', nested)], tmp_path)
  with pytest.raises(ValueError, match=r'fraction=1.5: the cooldown must be a share'):
    cooldown.cooldown_sweep(small_base(), BUDGETS, fraction=1.5, **isoflop_kwargs())


class FakeExecutor:
  """Runs nothing: a run 'finishes' (summary.json written) one poll after it starts."""
  order = []

  def __init__(self, max_concurrent, cpus_per_run=None, hosts_per_run=1):
    self.hosts = hosts_per_run
    self.running = []

  def active(self):
    return len(self.running)

  def start(self, run, begin):
    begin(run)
    self.running.append(run)
    FakeExecutor.order.append((run.label, tuple(r.label for r in self.running)))
    return 'started'

  def poll(self, timeout):
    done, self.running = self.running, []
    for run in done:
      run_dir_lib.write_json_atomically(run.run_dir / run_dir_lib.SUMMARY_FILE,
                                        {'status': 'completed', 'step': 1})
    return [(run, 0) for run in done]

  def close(self):
    pass

  def stop(self):
    return []


def test_runner_starts_a_branch_only_after_its_parent_finished(cooldown_runs, tmp_path,
                                                               monkeypatch):
  monkeypatch.setattr(runner, 'LocalExecutor', FakeExecutor)
  monkeypatch.setattr('research.data.shared_tokenizers.prepare_data', lambda *a, **k: None)
  FakeExecutor.order = []
  branches_first = sorted(cooldown_runs, key=lambda e: e[1].sweep.kind != cooldown.BRANCH_KIND)
  rows = runner.run_sweep(branches_first, tmp_path, max_concurrent=8, log=lambda *_: None)
  assert {r['status'] for r in rows} == {'completed'}
  by_label = dict(cooldown_runs)
  started = [label for label, _ in FakeExecutor.order]
  assert sorted(started) == sorted(by_label)
  for label, running in FakeExecutor.order:
    parent = by_label[label].sweep.get('parent')
    if parent:  # started after its parent started, and not alongside it (it had finished)
      assert started.index(parent) < started.index(label) and parent not in running
  # One table row per branch, naming its parent and branch step.
  branch_rows = [r for r in rows if r['kind'] == cooldown.BRANCH_KIND]
  assert len(branch_rows) == sum(c.sweep.kind == cooldown.BRANCH_KIND for _, c in cooldown_runs)
  ids = {r['label']: r['run_id'] for r in rows}
  for r in branch_rows:
    assert r['parent'] == ids[by_label[r['label']].sweep.parent] and r['branch_step'] > 0
    assert r['own_tokens'] == r['D'] - r['branch_step'] * 8 * 64


def test_data_constrained_runs_repeat_their_unique_tokens():
  runs = data_constrained.data_constrained_sweep(small_base(), [3e4, 1e5], [1e5, 3e5], [2, 4.5],
                                                 shapes=sizing.TINY_SHAPES)
  assert len(runs) == 8
  for label, c in runs:
    u, per_step = c.data.unique_tokens, c.train.batch_size * c.data.seq_len
    assert u % c.data.seq_len == 0 and c.sweep.kind == 'data_constrained'
    d = c.train.num_steps * per_step
    assert c.sweep.epochs * u == pytest.approx(d) and d >= float(label.split('-x')[1]) * u > d - per_step
    validate_config(c, num_devices=1)
  with_controls = data_constrained.data_constrained_sweep(
      small_base(), [3e4, 1e5], [1e5, 3e5], [2, 4.5], shapes=sizing.TINY_SHAPES,
      fresh_controls=True)
  repeated = {label: c for label, c in with_controls if c.sweep.kind == 'data_constrained'}
  controls = [c for _, c in with_controls if c.sweep.kind == 'data_constrained_control']
  assert repeated.keys() == dict(runs).keys()
  # one fresh run per (model, steps) of the repeated runs: the same tokens, no unique-token limit
  assert ({(c.model.d_model, c.train.num_steps) for c in repeated.values()}
          == {(c.model.d_model, c.train.num_steps) for c in controls})
  assert len(controls) == 8 and all(c.data.unique_tokens == 0 for c in controls)
  with pytest.raises(ValueError, match=r'epochs: 1 is not above one epoch'):
    data_constrained.data_constrained_sweep(small_base(), [3e4], [1e5], [1, 2])
  with pytest.raises(ValueError, match=r'unique_tokens: 256 tokens is less than one batch'):
    data_constrained.data_constrained_sweep(small_base(), [3e4], [300], [2],
                                            shapes=sizing.TINY_SHAPES)


def test_hyperparameter_grid_spends_each_budget_at_every_point():
  lrs, batches = (1e-3, 3e-3, 1e-2), (8, 16)
  runs = tuning.hyperparameter_sweep(small_base(), BUDGETS, lrs, batches,
                                     shapes=sizing.TINY_SHAPES,
                                     guess=generators.chinchilla_guess(40.0))
  assert len(runs) == len(BUDGETS) * len(lrs) * len(batches)
  grid = collections.defaultdict(set)
  for _, c in runs:
    n = counting.predict_param_counts(c.model).total
    d = c.train.num_steps * c.train.batch_size * c.data.seq_len
    assert c.sweep.kind == tuning.KIND == 'hyperparameter'
    assert abs(6 * n * d / c.sweep.budget - 1) < 0.5 / c.train.num_steps + 1e-9
    grid[c.sweep.budget].add((c.train.learning_rate, c.train.batch_size, n))
    assert c.train.warmup_steps <= 0.1 * c.train.num_steps
    validate_config(c, num_devices=1)
  for points in grid.values():
    assert {(lr, b) for lr, b, _ in points} == {(lr, b) for lr in lrs for b in batches}
    assert len({n for _, _, n in points}) == 1  # one model per budget
  with pytest.raises(ValueError, match=r'batch 4096 trains the model .* only \d+ steps'):
    tuning.hyperparameter_sweep(small_base(), BUDGETS, lrs, [4096], shapes=sizing.TINY_SHAPES)


def test_mup_transfer_grid_trains_every_width_on_the_same_tokens():
  runs = transfer.mup_transfer_sweep(small_base(), [32, 64, 128], [1e-3, 1e-2], 2e5,
                                     base_width=32)
  assert len(runs) == 2 * 3 * 2
  for label, c in runs:
    m = c.model
    assert m.d_model == c.sweep.width and m.d_model // m.num_heads == 16 and m.d_ff == 4 * m.d_model
    assert m.mup_base_width == (32 if m.parametrization == 'mup' else 0)
    assert c.train.num_steps == round(2e5 / (8 * 64)) and c.sweep.kind == 'mup_transfer'
    validate_config(c, num_devices=1)
  with pytest.raises(ValueError, match='widths: 40 is not a multiple of head_dim=16'):
    transfer.mup_transfer_sweep(small_base(), [40], [1e-3], 2e5, base_width=32)
