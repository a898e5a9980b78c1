"""Where a sweep's runs execute: each run is one `python -m experiments.train` subprocess.

'local' runs subprocesses on this machine, at most `max_concurrent` at once, pinned to disjoint
CPUs when several share it; 'ray' makes each run a Ray task holding `cpus_per_run` CPUs and
`gpus_per_run` GPUs, running the same subprocess. A training process holds its run directory's
lock for as long as it lives, so a run is never trained by two processes at once.
"""

from __future__ import annotations

import collections
import datetime
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Sequence

from research import run_dir as run_dir_lib
from research.run_dir.lock import INHERITED_LOCK_ENV, try_lock, wait_for_lock
from research.sweeps.plan import Run

ROOT = pathlib.Path(__file__).resolve().parents[2]  # holds the packages research and experiments
EXECUTORS = ('local', 'ray')
THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'RAYON_NUM_THREADS')
STOP_GRACE_S = 120  # after SIGTERM a run saves a checkpoint; then it is killed


def now() -> str:
  """UTC time to the second, ISO 8601: when an attempt started or ended."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# ---- one training process --------------------------------------------------------------------

def process_spec(run: Run, threads: int | None = None, cpus: Sequence[int] | None = None) -> dict:
  """Everything a worker needs to run one training process (plain data: it travels to Ray)."""
  env = {'PYTHONUNBUFFERED': '1'}
  if threads:
    env.update({name: str(threads) for name in THREAD_VARS})
  return {
      'args': ['-m', 'experiments.train', f'--config={run.run_dir / run_dir_lib.RUN_CONFIG_FILE}',
               f'--workdir={run.run_dir}'],
      'cwd': os.getcwd(),
      'pythonpath': str(ROOT),
      'env': env,
      'cpus': list(cpus) if cpus else None,
      'run_dir': str(run.run_dir),
      'label': run.label,
  }


def _popen(spec: dict, lock_fd: int) -> subprocess.Popen:
  """Starts the training process; it inherits the lock, which is released when it exits."""
  env = {**os.environ, **spec['env']}
  env['PYTHONPATH'] = os.pathsep.join(p for p in (spec['pythonpath'], os.environ.get('PYTHONPATH'))
                                      if p)
  env[INHERITED_LOCK_ENV] = str(lock_fd)  # the child holds the run directory with our lock
  command = [sys.executable, *spec['args']]
  with open(os.path.join(spec['run_dir'], run_dir_lib.LOG_FILE), 'a') as log:
    log.write(f'\n===== {now()} on {socket.gethostname()}: {" ".join(command)}\n')
    log.flush()
    # A session of its own: a Ctrl-C at the terminal reaches the driver, which stops runs cleanly.
    cwd = spec['cwd'] if os.path.isdir(spec['cwd']) else None  # a worker on another machine
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               pass_fds=(lock_fd,))
  if spec['cpus'] and hasattr(os, 'sched_setaffinity'):
    try:  # set before the interpreter starts any thread: XLA sizes its pool from the affinity
      os.sched_setaffinity(process.pid, spec['cpus'])
    except OSError:
      pass
  return process


def _stop(process: subprocess.Popen) -> None:
  """SIGTERM (the run checkpoints and exits), then SIGKILL after STOP_GRACE_S."""
  if process.poll() is None:
    process.send_signal(signal.SIGTERM)
    try:
      process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


def run_process(spec: dict) -> int:
  """Runs one training process to its end and returns its exit code (the body of a Ray task).

  Waits for the run directory's lock; returns 0 at once if the run finished meanwhile.
  """
  fd = wait_for_lock(spec['run_dir'])
  try:
    if os.path.exists(os.path.join(spec['run_dir'], run_dir_lib.SUMMARY_FILE)):
      return 0
    process = _popen(spec, fd)
    try:
      return process.wait()
    except BaseException:  # cancelled: let the run save a checkpoint
      _stop(process)
      raise
  finally:
    os.close(fd)


# ---- executors -------------------------------------------------------------------------------

class LocalExecutor:
  """Subprocesses on this machine; with several at once, each pinned to its own CPUs."""

  def __init__(self, max_concurrent: int, cpus_per_run: int | None = None):
    self.max_concurrent = max_concurrent
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    per = cpus_per_run or (len(available) // max_concurrent if max_concurrent > 1 else 0)
    self.slots = collections.deque(
        available[i * per:(i + 1) * per] if per and (i + 1) * per <= len(available) else None
        for i in range(max_concurrent))
    self.threads = per or None
    self.running = {}  # pid -> (run, process, slot)

  def active(self) -> int:
    return len(self.running)

  def start(self, run: Run, begin: Callable[[Run], None]) -> str:
    """'started', 'busy' (another process holds the run) or 'done' (it finished meanwhile)."""
    fd = try_lock(run.run_dir)
    if fd is None:
      return 'busy'
    try:
      if (run.run_dir / run_dir_lib.SUMMARY_FILE).exists():
        return 'done'
      slot = self.slots.popleft()
      begin(run)
      process = _popen(process_spec(run, self.threads, slot), fd)
      self.running[process.pid] = (run, process, slot)
      return 'started'
    finally:
      os.close(fd)  # the child holds the lock now

  def poll(self, timeout: float) -> list[tuple[Run, int]]:
    deadline = time.monotonic() + timeout
    while True:
      done = [(pid, p.poll()) for pid, (_, p, _) in self.running.items()]
      done = [(pid, rc) for pid, rc in done if rc is not None]
      if done or time.monotonic() >= deadline:
        break
      time.sleep(0.1)
    out = []
    for pid, rc in done:
      run, _, slot = self.running.pop(pid)
      self.slots.append(slot)
      out.append((run, rc))
    return out

  def close(self) -> None:
    pass

  def stop(self) -> list[tuple[Run, int]]:
    for _, process, _ in self.running.values():
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    for _, process, _ in self.running.values():
      _stop(process)
    return self.poll(0)


class RayExecutor:
  """Each run a Ray task that holds its CPUs/GPUs and runs the same training subprocess."""

  def __init__(self, max_concurrent: int, cpus_per_run: int | None = None,
               gpus_per_run: float | None = None, address: str | None = None, log=print):
    try:
      import ray
    except ImportError as e:
      raise RuntimeError('--executor=ray needs Ray: pip install ray') from e
    self.ray = ray
    self.owns_ray = not ray.is_initialized()
    if self.owns_ray:
      # Workers import this module to run the task: tell them where the code is (on a cluster,
      # the same path on every node, e.g. a shared filesystem).
      path = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)
      runtime_env = {'env_vars': {'PYTHONPATH': path}}
      address = address or os.environ.get('RAY_ADDRESS')
      if address:
        ray.init(address=address, runtime_env=runtime_env)
      else:
        ray.init(include_dashboard=False, runtime_env=runtime_env)
      log(f'ray: {ray.cluster_resources()}')
    if gpus_per_run is None:  # on a cluster with GPUs, each run holds one
      gpus_per_run = 1 if ray.cluster_resources().get('GPU', 0) else 0
    self.cpus = cpus_per_run or 1
    self.max_concurrent = max_concurrent
    self.task = ray.remote(num_cpus=self.cpus, num_gpus=gpus_per_run, max_retries=0)(run_process)
    self.pending = {}  # ObjectRef -> run

  def active(self) -> int:
    return len(self.pending)

  def start(self, run: Run, begin: Callable[[Run], None]) -> str:
    if (run.run_dir / run_dir_lib.SUMMARY_FILE).exists():
      return 'done'
    begin(run)
    self.pending[self.task.remote(process_spec(run, self.cpus))] = run
    return 'started'

  def poll(self, timeout: float) -> list[tuple[Run, int]]:
    if not self.pending:
      return []
    ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
    if ready:  # collect everything else that is also done
      ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
    out = []
    for ref in ready:
      run = self.pending.pop(ref)
      try:
        rc = self.ray.get(ref)
      except Exception:  # the task or its worker died
        rc = -1
      out.append((run, rc))
    return out

  def close(self) -> None:
    if self.owns_ray:
      self.ray.shutdown()

  def stop(self) -> list[tuple[Run, int]]:
    for ref in self.pending:
      self.ray.cancel(ref)  # KeyboardInterrupt in the task: it SIGTERMs its run
    out = []
    deadline = time.monotonic() + STOP_GRACE_S
    while self.pending and time.monotonic() < deadline:
      out += self.poll(1.0)
    return out


