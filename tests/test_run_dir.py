"""The run directory: atomic writes, metrics reading and trimming, identity, and run directories
written by earlier versions of the code still recognised."""

import json
import os
import pathlib

import pytest

from research import run_dir
from research.config import base_config
from research.sweeps import plan, runner, table

ROOT = pathlib.Path(__file__).parents[1]
# The resolved configs of the quickstart sweep's 15 runs, by run id, as the code of the first
# release wrote them into config.json.
LEGACY_QUICKSTART = ROOT / 'tests' / 'fixtures' / 'quickstart_run_configs_v1.json'


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
  path = tmp_path / 'summary.json'
  run_dir.write_json_atomically(path, {'b': 1, 'a': [1, 2]})
  assert json.loads(path.read_text()) == {'a': [1, 2], 'b': 1}
  assert oct(path.stat().st_mode & 0o777) == oct(0o644)

  def failing(tmp):
    pathlib.Path(tmp).write_text('half')
    raise OSError('disk full')
  with pytest.raises(OSError, match='disk full'):
    run_dir.write_atomically(path, failing)
  assert json.loads(path.read_text()) == {'a': [1, 2], 'b': 1}  # the old file is intact
  assert sorted(os.listdir(tmp_path)) == ['summary.json']


def test_read_json_is_none_for_missing_or_half_written_files(tmp_path):
  assert run_dir.read_json(tmp_path / 'missing.json') is None
  (tmp_path / 'half.json').write_text('{"status": "compl')
  assert run_dir.read_json(tmp_path / 'half.json') is None
  assert run_dir.read_summary(tmp_path) is None


def test_metrics_are_read_per_step_and_trimmed_after_a_rollback(tmp_path):
  lines = [{'step': 1, 'tokens': 100, 'loss': 5.0}, {'step': 2, 'tokens': 200, 'loss': 4.0},
           {'step': 2, 'eval_loss': 4.5}, {'step': 3, 'tokens': 300, 'loss': 3.5}]
  text = ''.join(json.dumps(r) + '\n' for r in lines) + '{"step": 4, "los'  # cut by a kill
  (tmp_path / run_dir.METRICS_FILE).write_text(text)
  tokens, loss = run_dir.read_metrics(tmp_path)
  assert tokens.tolist() == [100, 200, 300] and loss.tolist() == [5.0, 4.0, 3.5]
  tokens, evals = run_dir.read_metrics(tmp_path, 'eval_loss')
  assert tokens.tolist() == [200.0] and evals.tolist() == [4.5]  # step x tokens per step
  run_dir.truncate_metrics_after(tmp_path, 2)
  assert [r['step'] for r in run_dir.metric_records(tmp_path)] == [1, 2, 2]


def test_claim_writes_the_config_once_and_refuses_another(tmp_path):
  config = base_config()
  run_dir.claim(tmp_path / 'run', config)
  stored = run_dir.read_config(tmp_path / 'run')
  assert stored == json.loads(run_dir.config_json(config))
  run_dir.claim(tmp_path / 'run', config)  # the same config: accepted
  config.train.learning_rate = 1e-4
  with pytest.raises(ValueError, match=r'train\.learning_rate: 0\.003 in the directory, 0\.0001'):
    run_dir.claim(tmp_path / 'run', config)


def test_a_finished_sweep_written_by_the_first_release_is_still_finished(tmp_path):
  """Run ids are config hashes: unchanged configs must hash as before, or every finished sweep
  would be trained again."""
  legacy = json.loads(LEGACY_QUICKSTART.read_text())
  runs = plan.resolve_runs(plan.load_sweep(ROOT / 'configs' / 'sweeps' / 'quickstart.py'),
                           tmp_path, 'quickstart')
  assert sorted(r.run_id for r in runs) == sorted(legacy)
  for run_id, config in legacy.items():
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / run_dir.CONFIG_FILE).write_text(json.dumps(config))
    run_dir.write_json_atomically(tmp_path / run_id / run_dir.SUMMARY_FILE, {
        'status': 'completed', 'step': config['train']['num_steps'], 'final_eval_loss': 4.0})
  before = sorted(os.listdir(tmp_path))
  logged = []
  rows = runner.run_sweep(plan.load_sweep(ROOT / 'configs' / 'sweeps' / 'quickstart.py'),
                          tmp_path, sweep_name='quickstart', log=logged.append)
  assert len(rows) == 15 and {r['status'] for r in rows} == {'completed'}
  assert '15 runs: 15 finished or skipped, 0 to run' in logged
  after = set(os.listdir(tmp_path))
  assert set(before) <= after
  assert {p.name for p in table.run_dirs(tmp_path)} == set(legacy)
