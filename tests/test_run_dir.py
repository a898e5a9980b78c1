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
# The resolved configs of the first release's quickstart sweep's 15 runs, by run id, as its code
# wrote them into config.json, and that sweep file, frozen (the quickstart has been redesigned).
LEGACY_QUICKSTART = ROOT / 'tests' / 'fixtures' / 'quickstart_run_configs_v1.json'
QUICKSTART_V1 = ROOT / 'tests' / 'fixtures' / 'quickstart_v1_sweep.py'


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
  assert run_dir.claim(tmp_path / 'run', config) == []
  stored = run_dir.read_config(tmp_path / 'run')
  assert stored == json.loads(run_dir.config_json(config))
  assert run_dir.claim(tmp_path / 'run', config) == []  # the same config: accepted
  config.train.learning_rate = 1e-4
  with pytest.raises(ValueError, match=r'train\.learning_rate: 0\.003 in the directory, 0\.0001'):
    run_dir.claim(tmp_path / 'run', config)


def test_identity_is_the_experiment_not_how_it_executes():
  config = base_config()
  execution = config.copy_and_resolve_references()
  execution.mesh.ici = (2, 2, 2)
  execution.distributed.num_processes = 2
  execution.model.attention_impl = 'blockwise'
  execution.train.update(log_every=1, eval_every=7, checkpoint_every=5, keep_checkpoints=9,
                         loss_chunk_len=0, grad_accum_steps=2)
  execution.data.data_dir = '/elsewhere'
  assert run_dir.config_hash(execution) == run_dir.config_hash(config)
  for section, field, value in (('model', 'd_model', 64), ('train', 'num_steps', 7),
                                ('train', 'seed', 1), ('data', 'seq_len', 64),
                                ('train', 'schedule', 'wsd'), ('model', 'scan_layers', True)):
    other = config.copy_and_resolve_references()
    other[section][field] = value
    assert run_dir.config_hash(other) != run_dir.config_hash(config), (section, field)


def test_a_run_resumes_with_other_execution_fields_and_says_which(tmp_path):
  config = base_config()
  run_dir.claim(tmp_path, config)
  config.mesh.ici = (8, 1, 1)
  config.train.checkpoint_every = 50
  changed = run_dir.claim(tmp_path, config)
  assert changed == ['mesh.ici: [-1, 1, 1] in the directory, [8, 1, 1] now',
                     'train.checkpoint_every: 200 in the directory, 50 now']
  assert run_dir.read_config(tmp_path)['mesh']['ici'] == [8, 1, 1]  # config.json says how now


def test_an_older_config_json_without_newer_fields_is_the_same_experiment(tmp_path):
  config = base_config()
  stored = json.loads(run_dir.config_json(config))
  del stored['train']['verify_checkpoints'], stored['train']['z_loss']  # added after it was written
  stored['train']['a_field_since_removed'] = 1
  (tmp_path / run_dir.CONFIG_FILE).write_text(json.dumps(stored))
  assert run_dir.claim(tmp_path, config, defaults=base_config().to_dict()) == []
  config.train.z_loss = 1e-4  # not the default the old run trained with
  with pytest.raises(ValueError, match=r'train\.z_loss: 0\.0 in the directory, 0\.0001 now'):
    run_dir.claim(tmp_path, config, defaults=base_config().to_dict())


def _write_legacy_quickstart(workdir) -> dict:
  """The first release's finished quickstart sweep: its 15 config.json files and summaries."""
  legacy = json.loads(LEGACY_QUICKSTART.read_text())
  for run_id, config in legacy.items():
    (workdir / run_id).mkdir(parents=True)
    (workdir / run_id / run_dir.CONFIG_FILE).write_text(json.dumps(config))
    run_dir.write_json_atomically(workdir / run_id / run_dir.SUMMARY_FILE, {
        'status': 'completed', 'step': config['train']['num_steps'], 'final_eval_loss': 4.0})
  return legacy


def _quickstart(**mesh):
  sweep = plan.load_sweep(QUICKSTART_V1)
  for _, config in sweep:
    config.mesh.update(mesh)
  return sweep


@pytest.mark.parametrize('mesh', [{}, {'ici': (1, 1, 1), 'dcn': (1, 1, 1)}],
                         ids=['same mesh', 'another mesh'])
def test_a_finished_sweep_written_by_the_first_release_is_still_finished(tmp_path, mesh):
  """Its run ids hashed the whole config, mesh included; its directories are found by their
  experiment fields, and nothing is trained again."""
  legacy = _write_legacy_quickstart(tmp_path)
  runs = plan.resolve_runs(_quickstart(**mesh), tmp_path, 'quickstart')
  assert sorted(r.run_id for r in runs) == sorted(legacy)
  before = {p.name: (p / run_dir.CONFIG_FILE).read_text() for p in tmp_path.iterdir()}
  logged = []
  rows = runner.run_sweep(_quickstart(**mesh), tmp_path, sweep_name='quickstart',
                          log=logged.append)
  assert len(rows) == 15 and {r['status'] for r in rows} == {'completed'}
  assert '15 runs: 15 finished or skipped, 0 to run' in logged
  assert {p.name for p in table.run_dirs(tmp_path)} == set(legacy)
  for name, text in before.items():  # finished runs are left as they were
    assert (tmp_path / name / run_dir.CONFIG_FILE).read_text() == text


def test_a_finished_sweep_launched_on_another_mesh_trains_nothing(tmp_path):
  runs = plan.resolve_runs(_quickstart(), tmp_path, 'quickstart')
  for run in runs:  # finished by this version on the default mesh
    plan.write_run_files(run)
    run_dir.write_json_atomically(run.run_dir / run_dir.SUMMARY_FILE, {'status': 'completed',
                                                                        'step': 1})
  again = plan.resolve_runs(_quickstart(ici=(1, 1, 1)), tmp_path, 'quickstart')
  assert [r.run_id for r in again] == [r.run_id for r in runs]
  logged = []
  runner.run_sweep(_quickstart(ici=(1, 1, 1)), tmp_path, sweep_name='quickstart',
                   log=logged.append)
  assert '15 runs: 15 finished or skipped, 0 to run' in logged
