"""Exact resume: a run killed (SIGKILL, also mid-save) or preempted (SIGTERM) and restarted ends
bitwise equal to an uninterrupted run."""

import signal

import pytest

from research.train.checkpoint import load_state
from research.train.loop import train
from tests.train_helpers import (assert_states_equal, launch_train, logged_step, tiny_config,
                                 wait_for, write_corpus)

NUM_STEPS = 60


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('resume')
  corpus, cache = write_corpus(root / 'text'), root / 'cache'
  config_file = root / 'config.py'
  config_file.write_text(
      'from tests.train_helpers import tiny_config\n\n\ndef get_config():\n'
      f'  return tiny_config({str(corpus)!r}, {str(cache)!r}, num_steps={NUM_STEPS}, '
      'checkpoint_every=10)\n')
  reference = root / 'reference'
  train(tiny_config(corpus, cache, num_steps=NUM_STEPS, checkpoint_every=10), reference,
        log=lambda *_: None)
  return config_file, load_state(reference)


def saving(workdir) -> bool:
  """True while Orbax writes a checkpoint into a temporary directory (renamed on commit)."""
  directory = workdir / 'checkpoints'
  return directory.exists() and any('tmp' in p.name for p in directory.iterdir())


def finish(config_file, workdir):
  process = launch_train(config_file, workdir)
  out, _ = process.communicate(timeout=300)
  assert process.returncode == 0, out
  assert 'status=completed' in out


def assert_bitwise_equal(workdir, reference):
  step, state = load_state(workdir)
  ref_step, ref_state = reference
  assert step == ref_step == NUM_STEPS
  assert_states_equal(state, ref_state)


def test_sigkill_mid_run_then_resume_is_bitwise_exact(setup, tmp_path):
  config_file, reference = setup
  workdir = tmp_path / 'run'
  process = launch_train(config_file, workdir)
  assert wait_for(lambda: logged_step(workdir) >= 25, process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert logged_step(workdir) < NUM_STEPS
  finish(config_file, workdir)
  assert_bitwise_equal(workdir, reference)


@pytest.mark.slow
def test_sigkill_during_checkpoint_save_then_resume_is_bitwise_exact(setup, tmp_path):
  config_file, reference = setup
  workdir = tmp_path / 'run'
  process = launch_train(config_file, workdir)
  # Skip the first save so that a committed checkpoint exists, then kill inside the next one.
  assert wait_for(lambda: logged_step(workdir) >= 12, process)
  caught = wait_for(lambda: saving(workdir), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert caught, 'the run finished before a save could be interrupted'
  finish(config_file, workdir)
  assert_bitwise_equal(workdir, reference)


def test_sigterm_saves_and_exits_zero_then_resume_is_bitwise_exact(setup, tmp_path):
  config_file, reference = setup
  workdir = tmp_path / 'run'
  process = launch_train(config_file, workdir)
  assert wait_for(lambda: logged_step(workdir) >= 25, process)
  process.send_signal(signal.SIGTERM)
  out, _ = process.communicate(timeout=120)
  assert process.returncode == 0, out
  assert 'SIGTERM: saved step' in out
  step, _ = load_state(workdir)
  assert 25 <= step <= NUM_STEPS
  finish(config_file, workdir)
  assert_bitwise_equal(workdir, reference)
