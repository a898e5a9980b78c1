"""Two local processes x 4 CPU devices (gloo) train exactly like one process with 8 devices, also
as a sweep run of two processes (`--hosts-per-run=2`) that loses one process, fails, and is
retried."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import psutil
import pytest

from research import run_dir as run_dir_lib
from tests.train_helpers import wait_for, write_corpus

ROOT = pathlib.Path(__file__).parents[1]
TIMEOUT_S = 300  # a hung collective fails the test instead of stalling CI
NUM_STEPS, CHECKPOINT_EVERY = 16, 4


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(config_file, workdir, devices, *flags):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.Popen([sys.executable, '-m', 'experiments.train', f'--config={config_file}',
                           f'--workdir={workdir}', *flags], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_all(processes):
  outputs = []
  try:
    for p in processes:
      outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in processes:
      p.kill()
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]
  return outputs


def assert_matches(workdir, single):
  """The run in `workdir` has the single-process run's losses, to float32 reduction order."""
  np.testing.assert_allclose(losses(workdir), losses(single), rtol=1e-5)
  assert len(losses(workdir)) == NUM_STEPS
  summary, expected = run_dir_lib.read_summary(workdir), run_dir_lib.read_summary(single)
  assert summary['status'] == 'completed'
  assert summary['final_eval_loss'] == pytest.approx(expected['final_eval_loss'], rel=1e-5)


def losses(workdir):
  return np.asarray([json.loads(line)['loss'] for line in
                     (workdir / 'metrics.jsonl').read_text().splitlines() if '"loss"' in line])


CONFIG = '''from tests.train_helpers import tiny_config


def get_{kind}():
  c = tiny_config({corpus!r}, {cache!r}, num_steps={steps}, checkpoint_every={every},
                  eval_every=8)
  c.model.update(num_heads=4, num_kv_heads=4)
  c.mesh.ici = (-1, 2, 1)
  return {returned}
'''


@pytest.fixture(scope='module')
def config_file(tmp_path_factory):
  root = tmp_path_factory.mktemp('multihost')
  corpus = write_corpus(root / 'text')
  fields = dict(corpus=str(corpus), cache=str(root / 'cache'), steps=NUM_STEPS,
                every=CHECKPOINT_EVERY)
  (root / 'config.py').write_text(CONFIG.format(kind='config', returned='c', **fields))
  (root / 'sweep.py').write_text(CONFIG.format(kind='sweep', returned="[('two_hosts', c)]",
                                               **fields))
  return root / 'config.py'


@pytest.fixture(scope='module')
def single(config_file):
  """The run on one process with 8 devices: what the multi-process runs must match."""
  workdir = config_file.parent / 'single'
  wait_all([launch(config_file, workdir, 8)])
  return workdir


def test_two_processes_match_one_process_with_eight_devices(config_file, single, tmp_path):
  port = free_port()
  workdir = tmp_path / 'multi'
  wait_all([launch(config_file, workdir, 4,
                   f'--config.distributed.coordinator_address=127.0.0.1:{port}',
                   '--config.distributed.num_processes=2', f'--config.distributed.process_id={i}')
            for i in range(2)])
  assert_matches(workdir, single)
  # Each process saved its own data-iterator state beside the collectively written train state.
  data_dir = workdir / 'checkpoints' / str(NUM_STEPS) / 'data'
  assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith('process_')) == [
      'process_0-of-2.json', 'process_1-of-2.json']


def sweep(config_file, workdir, *flags):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  return subprocess.Popen([sys.executable, '-m', 'experiments.sweep',
                           f'--sweep={config_file.parent / "sweep.py"}', f'--workdir={workdir}',
                           '--hosts-per-run=2', *flags], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_sweep_run_of_two_processes_fails_when_one_dies_and_is_retried(config_file, single,
                                                                        tmp_path):
  """Killing one process of a two-process run kills the other and fails the run, which the sweep
  records; `--retry-failed` resumes it from its checkpoint and it ends as the one-process run."""
  workdir = tmp_path / 'sweep'
  driver = sweep(config_file, workdir)
  run_dirs = lambda: [p for p in workdir.glob('*') if (p / run_dir_lib.RUN_CONFIG_FILE).exists()]
  committed = lambda: any((p / run_dir_lib.CHECKPOINT_DIR / str(CHECKPOINT_EVERY)).is_dir()
                          for p in run_dirs())
  assert wait_for(committed, driver, timeout=TIMEOUT_S), driver.communicate()[0]
  second = [p for p in psutil.Process(driver.pid).children(recursive=True)
            if '--config.distributed.process_id=1' in p.cmdline()]
  assert len(second) == 1
  second[0].kill()
  out = driver.communicate(timeout=TIMEOUT_S)[0]
  (run,) = run_dirs()
  assert driver.returncode == 1 and 'two_hosts (failed)' in out, out[-3000:]
  assert run_dir_lib.read_summary(run) is None, 'the run finished before a process was killed'
  record = run_dir_lib.read_json(run / run_dir_lib.RUNNER_FILE)
  assert (record['status'], record['returncode'], record['attempts']) == ('failed', -9, 1)
  assert (run / run_dir_lib.HOST_LOG_FILE.format(index=1)).exists()

  (out,) = wait_all([sweep(config_file, workdir, '--retry-failed')])
  record = run_dir_lib.read_json(run / run_dir_lib.RUNNER_FILE)
  assert record['attempts'] == 2, out[-3000:]
  assert 'resumed from the checkpoint at step' in (run / run_dir_lib.LOG_FILE).read_text()
  assert_matches(run, single)


@pytest.mark.slow
def test_a_ray_sweep_places_a_two_process_run_on_two_nodes(config_file, single, tmp_path):
  """On a two-node Ray cluster (two raylets on this machine), a run of two processes gets a
  STRICT_SPREAD placement group: one task per node, joined through jax.distributed, and it ends
  as the one-process run."""
  ray = pytest.importorskip('ray')
  from ray.cluster_utils import Cluster
  from research.sweeps import plan, runner
  cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 1})
  cluster.add_node(num_cpus=1)
  ray.init(address=cluster.address, runtime_env={'env_vars': {
      'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu',
      'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}})
  try:
    assert len([n for n in ray.nodes() if n['Alive']]) == 2
    rows = runner.run_sweep(plan.load_sweep(config_file.parent / 'sweep.py'), tmp_path / 'sweep',
                            executor='ray', hosts_per_run=2, log=lambda *_: None)
  finally:
    ray.shutdown()
    cluster.shutdown()
  (row,) = rows
  assert row['status'] == 'completed'
  run = pathlib.Path(row['run_dir'])
  assert run_dir_lib.read_json(run / run_dir_lib.RUNNER_FILE)['executor'] == 'ray'
  assert (run / run_dir_lib.HOST_LOG_FILE.format(index=1)).exists()
  assert_matches(run, single)
