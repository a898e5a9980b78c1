"""Checkpoint verification: checksums recorded after commit, and the restore that skips (and
keeps aside) checkpoints that fail them, cannot be read, or hold non-finite parameters."""

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from research import run_dir
from research.train import checkpoint as ckpt
from research.train.state import TrainState


def _state(value):
  params = {'w': jnp.full((4, 3), value, jnp.float32), 'b': jnp.arange(3, dtype=jnp.float32)}
  return TrainState(step=jnp.asarray(1, jnp.int32), params=params, opt_state=())


def _iterator():
  return grain.MapDataset.range(100).to_iter_dataset().__iter__()


def _save_three(workdir, last_value=3.0):
  manager = ckpt.make_manager(workdir, keep=None)
  recorder = ckpt.ChecksumRecorder(workdir, manager)
  for step, value in ((10, 1.0), (20, 2.0), (30, last_value)):
    ckpt.save(manager, step, _state(value), _iterator(), {'value': value})
    recorder.saved()
    recorder.wait()
  return manager


def test_checksums_are_recorded_after_each_commit_and_verify(tmp_path):
  manager = _save_three(tmp_path)
  for step in (10, 20, 30):
    recorded = run_dir.read_json(tmp_path / run_dir.CHECKSUMS_DIR / f'{step}.json')
    assert recorded['step'] == step and len(recorded['sha256']) >= 3
    assert ckpt.verify(tmp_path, step) is None
  step, state, meta = ckpt.restore_newest_good(manager, tmp_path, ckpt.abstract_like(_state(0.0)),
                                               _iterator(), log=lambda *_: None)
  assert step == 30 and meta == {'value': 3.0}
  np.testing.assert_array_equal(state.params['w'], np.full((4, 3), 3.0))


def test_a_changed_file_is_named_and_its_checkpoint_moved_aside(tmp_path):
  manager = _save_three(tmp_path)
  victim = max((p for p in (tmp_path / run_dir.CHECKPOINT_DIR / '30').rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  victim.write_bytes(b'\0' * victim.stat().st_size)
  assert 'does not match its checksum' in ckpt.verify(tmp_path, 30)
  logged = []
  step, _, meta = ckpt.restore_newest_good(manager, tmp_path, ckpt.abstract_like(_state(0.0)),
                                           _iterator(), log=logged.append)
  assert step == 20 and meta == {'value': 2.0}
  assert 'checkpoint at step 30 rejected' in logged[0]
  aside = tmp_path / run_dir.REJECTED_DIR / '30'
  assert (aside / 'reason.txt').read_text().startswith('file ') and (aside / 'checksums.json').exists()
  assert manager.all_steps() == [10, 20]


def test_non_finite_parameters_send_the_restore_to_the_previous_checkpoint(tmp_path):
  manager = _save_three(tmp_path, last_value=float('nan'))
  logged = []
  step, _, _ = ckpt.restore_newest_good(manager, tmp_path, ckpt.abstract_like(_state(0.0)),
                                        _iterator(), log=logged.append)
  assert step == 20 and 'not finite' in logged[0]


def test_when_every_checkpoint_fails_none_is_restored_and_all_are_kept(tmp_path):
  manager = _save_three(tmp_path)
  for step in (10, 20, 30):
    (tmp_path / run_dir.CHECKSUMS_DIR / f'{step}.json').write_text(
        '{"step": %d, "sha256": {"missing.file": "0"}}' % step)
  with pytest.raises(ckpt.NoGoodCheckpoint):
    ckpt.restore_newest_good(manager, tmp_path, ckpt.abstract_like(_state(0.0)), _iterator(),
                             log=lambda *_: None)
  assert sorted(p.name for p in (tmp_path / run_dir.REJECTED_DIR).iterdir()) == ['10', '20', '30']


def test_a_checkpoint_without_checksums_is_accepted_if_it_reads_and_is_finite(tmp_path):
  """Checkpoints written before checksums existed (or killed between commit and checksums)."""
  manager = _save_three(tmp_path)
  (tmp_path / run_dir.CHECKSUMS_DIR / '30.json').unlink()
  assert ckpt.verify(tmp_path, 30) is None
  step, _, _ = ckpt.restore_newest_good(manager, tmp_path, ckpt.abstract_like(_state(0.0)),
                                        _iterator(), log=lambda *_: None)
  assert step == 30
