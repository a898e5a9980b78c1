"""Reliability end to end through the train CLI: a run resumes on another mesh, a corrupted newest
checkpoint is set aside and the run ends bitwise equal to an uninterrupted one, and a second
process on a live run directory is refused, then takes over once the first is killed."""

import os
import shutil
import signal
import socket
import time

import numpy as np
import pytest

from research import run_dir
from research.train.checkpoint import load_state, record_new_checksums
from research.train.loop import train
from tests.train_helpers import (assert_states_equal, launch_train, logged_step, tiny_config,
                                 wait_for, write_config_file, write_corpus)

NUM_STEPS = 50


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('reliability')
  corpus, cache = write_corpus(root / 'text'), root / 'cache'
  overrides = dict(num_steps=NUM_STEPS, checkpoint_every=10)
  config_file = write_config_file(root / 'config.py', corpus, cache, **overrides)
  train(tiny_config(corpus, cache, **overrides), root / 'reference', log=lambda *_: None)
  return root, corpus, cache, config_file, load_state(root / 'reference')


def kill_after_checkpoint(config_file, workdir, step: int, *flags, devices=None):
  """SIGKILL once checkpoint `step` has committed (Orbax renames its directory to the step)."""
  process = launch_train(config_file, workdir, *flags, devices=devices)
  assert wait_for(lambda: (workdir / run_dir.CHECKPOINT_DIR / str(step)).is_dir(),
                  process), process.communicate()[0]
  process.kill()
  process.wait()
  assert run_dir.read_summary(workdir) is None, 'the run finished before it could be killed'


def finish(config_file, workdir, *flags, devices=None) -> str:
  out, _ = (process := launch_train(config_file, workdir, *flags,
                                    devices=devices)).communicate(timeout=600)
  assert process.returncode == 0 and 'status=completed' in out, out
  return out


@pytest.fixture(scope='module')
def killed_midway(setup):
  """A run killed well before its last step. It saves every 2 steps (an execution field), which
  slows it enough for the kill to land mid-run. Checkpoints committed just before the kill get
  their checksums here, as the next start would record them, so each test damages a checkpoint
  whose checksums were taken before the damage."""
  root, _, _, config_file, _ = setup
  workdir = root / 'killed'
  kill_after_checkpoint(config_file, workdir, 20, '--config.train.checkpoint_every=2')
  record_new_checksums(workdir)
  return workdir


def _largest_file(directory):
  return max((p for p in directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def _overwrite(path):
  data = bytearray(path.read_bytes())
  start = max(0, len(data) // 2 - 500)
  data[start:start + 1000] = np.random.default_rng(0).bytes(len(data[start:start + 1000]))
  path.write_bytes(bytes(data))


CORRUPTIONS = {
    'bytes overwritten': _overwrite,
    'file truncated': lambda path: os.truncate(path, path.stat().st_size // 2),
    'file removed': lambda path: path.unlink(),
}


@pytest.mark.parametrize('corruption', sorted(CORRUPTIONS))
def test_a_corrupted_newest_checkpoint_is_set_aside_and_the_run_ends_bitwise_equal(
    setup, killed_midway, tmp_path, corruption):
  _, _, _, config_file, reference = setup
  workdir = tmp_path / 'run'
  shutil.copytree(killed_midway, workdir)
  steps = sorted(int(p.name) for p in (workdir / run_dir.CHECKPOINT_DIR).iterdir()
                 if p.name.isdigit())
  newest = steps[-1]
  assert 20 <= newest < NUM_STEPS and len(steps) >= 2, steps
  CORRUPTIONS[corruption](_largest_file(workdir / run_dir.CHECKPOINT_DIR / str(newest)))
  out = finish(config_file, workdir)
  assert f'checkpoint at step {newest} rejected' in out, out
  assert f'resumed from the checkpoint at step {steps[-2]}' in out, out
  aside = workdir / run_dir.REJECTED_DIR / str(newest)
  assert aside.is_dir() and (aside / 'reason.txt').read_text().strip()
  step, state = load_state(workdir)
  assert step == NUM_STEPS
  assert_states_equal(state, reference[1])


@pytest.mark.slow
def test_killed_on_a_2x2x2_mesh_it_resumes_on_8x1x1_and_on_one_device(setup, tmp_path):
  """Restoring onto another mesh is exact; the steps after it sum in another order, so the final
  loss agrees with the uninterrupted run within float32 reduction-order tolerance."""
  root, corpus, cache, _, _ = setup
  overrides = dict(num_steps=30, checkpoint_every=10)
  config_file = write_config_file(tmp_path / 'config.py', corpus, cache,
                                  'c.model.update(num_heads=4, num_kv_heads=4)\n'
                                  'c.mesh.ici = (2, 2, 2)', **overrides)
  reference = tiny_config(corpus, cache, **overrides)
  reference.model.update(num_heads=4, num_kv_heads=4)
  expected = train(reference, tmp_path / 'reference', log=lambda *_: None)
  kill_after_checkpoint(config_file, tmp_path / 'killed', 10, devices=8)
  newest = max(int(p.name) for p in (tmp_path / 'killed' / run_dir.CHECKPOINT_DIR).iterdir()
               if p.name.isdigit())
  assert newest < 30
  for ici, devices in (('(8,1,1)', 8), ('(1,1,1)', 1)):
    workdir = tmp_path / f'resumed_{devices}'
    shutil.copytree(tmp_path / 'killed', workdir)
    out = finish(config_file, workdir, f'--config.mesh.ici={ici}', devices=devices)
    assert f'resumed from the checkpoint at step {newest}' in out
    assert 'changed execution field: mesh.ici: [2, 2, 2] in the directory' in out, out
    summary = run_dir.read_summary(workdir)
    for key in ('final_train_loss', 'final_eval_loss'):
      print(f'resumed on {ici}: {key} {summary[key]!r} vs {expected[key]!r} uninterrupted '
            f'(relative difference {abs(summary[key] / expected[key] - 1):.2e})')
      np.testing.assert_allclose(summary[key], expected[key], rtol=2e-5, err_msg=f'{ici} {key}')


@pytest.mark.slow
def test_a_second_process_is_refused_then_takes_over_after_the_first_is_killed(setup, tmp_path):
  _, _, _, config_file, reference = setup
  workdir = tmp_path / 'run'
  first = launch_train(config_file, workdir)
  assert wait_for(lambda: logged_step(workdir) >= 3, first)
  os.kill(first.pid, signal.SIGSTOP)  # alive, holding the run directory, making no progress
  try:
    start = time.perf_counter()
    out, _ = (second := launch_train(config_file, workdir)).communicate(timeout=120)
    refused_after_s = time.perf_counter() - start
  finally:
    first.kill()
    first.wait()
  print(f'second process refused after {refused_after_s:.1f} s: {out.strip().splitlines()[-1]}')
  assert second.returncode == 2, out
  assert f'is in use by pid {first.pid} on {socket.gethostname()}' in out, out
  assert refused_after_s < 60  # Python and jax start-up, then the refusal at once
  finish(config_file, workdir)
  step, state = load_state(workdir)
  assert step == NUM_STEPS
  assert_states_equal(state, reference[1])


def test_killed_between_the_final_checkpoint_and_the_summary_it_summarises_the_same(setup,
                                                                                    tmp_path):
  root, _, _, config_file, _ = setup
  workdir = tmp_path / 'run'
  shutil.copytree(root / 'reference', workdir)
  expected = run_dir.read_summary(workdir)
  (workdir / run_dir.SUMMARY_FILE).unlink()
  out = finish(config_file, workdir)
  assert f'resumed from the checkpoint at step {NUM_STEPS}' in out
  summary = run_dir.read_summary(workdir)
  for key in ('final_train_loss', 'final_eval_loss', 'final_eval_bits_per_byte', 'step'):
    assert summary[key] == expected[key], key
