"""Where a sweep's runs execute: each run is one `python -m experiments.train` process per host.

'local' runs subprocesses on this machine, at most `max_concurrent` runs at once, pinned to
disjoint CPUs when several share it; 'ray' makes each run a Ray task holding `cpus_per_run` CPUs
and `gpus_per_run` GPUs (and `tpus_per_host` TPU chips) running the same subprocess. A run with
`hosts_per_run` > 1 is that many processes joined through `jax.distributed` (locally on
127.0.0.1; on Ray, one task per bundle of a placement group, process 0's node the coordinator).
A run's processes live and die together: when one fails the others are killed and the run fails.

Process 0 of a run holds its run directory's lock for as long as it lives (it inherits the
executor's flock; in an object store it takes the lease itself), so a run is never trained by two
sweeps at once.
"""

from __future__ import annotations

import collections
import datetime
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

from research import run_dir as run_dir_lib
from research.run_dir.lock import INHERITED_LOCK_ENV, try_lock, wait_for_lock
from research.sweeps.plan import Run

ROOT = pathlib.Path(__file__).resolve().parents[2]  # holds the packages research and experiments
EXECUTORS = ('local', 'ray')
THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'RAYON_NUM_THREADS')
STOP_GRACE_S = 120  # after SIGTERM a run saves a checkpoint; then it is killed
LEASE_POLL_S = 2.0  # how often a worker looks again at a run directory leased by another process


def now() -> str:
  """UTC time to the second, ISO 8601: when an attempt started or ended."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def free_port() -> int:
  """A TCP port free on this machine now (the coordinator of a multi-host run listens on it)."""
  with socket.socket() as s:
    s.bind(('', 0))
    return s.getsockname()[1]


# ---- the processes of one run ----------------------------------------------------------------

def process_spec(run: Run, threads: int | None = None, cpus: Sequence[int] | None = None,
                 hosts: int = 1) -> dict:
  """Everything a worker needs to run a run's processes (plain data: it travels to Ray)."""
  env = {'PYTHONUNBUFFERED': '1'}
  if threads:
    env.update({name: str(threads) for name in THREAD_VARS})
  return {
      'cwd': os.getcwd(),
      'pythonpath': str(ROOT),
      'env': env,
      'cpus': list(cpus) if cpus else None,
      'run_dir': str(run.run_dir),
      'label': run.label,
      'hosts': hosts,
  }


def host_flags(index: int, count: int, coordinator: str | None) -> list[str]:
  """The train CLI's flags that make it process `index` of a `count`-process run."""
  if count == 1:
    return []
  return [f'--config.distributed.coordinator_address={coordinator}',
          f'--config.distributed.num_processes={count}', f'--config.distributed.process_id={index}']


def _log_name(index: int) -> str:
  return run_dir_lib.LOG_FILE if index == 0 else run_dir_lib.HOST_LOG_FILE.format(index=index)


def _die_with_parent() -> None:
  """Run in a Ray task's child before it starts: SIGKILL it if the worker dies (Linux)."""
  try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


class Group:
  """The training processes of one run, one per host (or some of them, on one Ray worker).

  They live and die together: once one exits non-zero, the others are killed (they would wait
  for it in a collective) and the run's exit code is the first failure's. In a local run
  directory each process appends to its log file; in an object store it writes a local staging
  file, uploaded onto the run's log when the group ends.
  """

  def __init__(self, spec: dict, members: Sequence[int], lock_fd: int | None,
               coordinator: str | None = None, die_with_parent: bool = False):
    self.spec, self.run_dir = spec, run_dir_lib.as_path(spec['run_dir'])
    self.local = run_dir_lib.is_local(self.run_dir)
    self.staging = tempfile.mkdtemp(prefix='research-run-')
    self.logs = {}
    config_file = self._config_file()
    self.processes = [self._popen(i, config_file, lock_fd, coordinator, die_with_parent)
                      for i in members]
    self._done = False

  def _config_file(self) -> str:
    """The run's run_config.py as a local file (the train CLI imports it): the run directory's
    own, or for a run directory in an object store, a copy with config.json beside it."""
    if self.local:
      return str(self.run_dir / run_dir_lib.RUN_CONFIG_FILE)
    for name in (run_dir_lib.RUN_CONFIG_FILE, run_dir_lib.CONFIG_FILE):
      pathlib.Path(self.staging, name).write_bytes((self.run_dir / name).read_bytes())
    return os.path.join(self.staging, run_dir_lib.RUN_CONFIG_FILE)

  def _popen(self, index: int, config_file: str, lock_fd: int | None, coordinator,
             die_with_parent: bool) -> subprocess.Popen:
    spec, count = self.spec, self.spec['hosts']
    env = {**os.environ, **spec['env']}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (spec['pythonpath'],
                                                    os.environ.get('PYTHONPATH')) if p)
    env.pop(INHERITED_LOCK_ENV, None)
    if lock_fd is not None and index == 0:
      env[INHERITED_LOCK_ENV] = str(lock_fd)  # process 0 holds the run directory with our lock
    command = [sys.executable, '-m', 'experiments.train', f'--config={config_file}',
               f'--workdir={spec["run_dir"]}', *host_flags(index, count, coordinator)]
    name = _log_name(index)
    path = (os.path.join(spec['run_dir'], name) if self.local
            else os.path.join(self.staging, name))
    self.logs[index] = path
    with open(path, 'a') as log:
      log.write(f'\n===== {now()} on {socket.gethostname()}, process {index} of {count}: '
                f'{" ".join(command)}\n')
      log.flush()
      # A session of its own: a Ctrl-C at the terminal reaches the driver, which stops runs.
      cwd = spec['cwd'] if os.path.isdir(spec['cwd']) else None  # a worker on another machine
      process = subprocess.Popen(
          command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
          stderr=subprocess.STDOUT, start_new_session=True,
          pass_fds=(lock_fd,) if lock_fd is not None else (),  # held until all have exited
          preexec_fn=_die_with_parent if die_with_parent else None)
    if spec['cpus'] and hasattr(os, 'sched_setaffinity'):
      try:  # set before the interpreter starts any thread: XLA sizes its pool from the affinity
        os.sched_setaffinity(process.pid, spec['cpus'])
      except OSError:
        pass
    return process

  def poll(self) -> int | None:
    """The run's exit code once it has ended, else None; a failure kills the other processes."""
    codes = [p.poll() for p in self.processes]
    failed = [c for c in codes if c not in (None, 0)]
    if failed:
      for process in self.processes:
        if process.poll() is None:
          process.kill()
          process.wait()
      self._finish()
      return failed[0]
    if all(c == 0 for c in codes):
      self._finish()
      return 0
    return None

  def wait(self, poll_s: float = 0.2) -> int:
    while (rc := self.poll()) is None:
      time.sleep(poll_s)
    return rc

  def stop(self) -> int:
    """SIGTERM to every process (they checkpoint together and exit), SIGKILL after the grace."""
    for process in self.processes:
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in self.processes:
      try:
        process.wait(max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return self.poll()

  def _finish(self) -> None:
    """Uploads the staged logs of a run directory in an object store; removes the staging."""
    if self._done:
      return
    self._done = True
    if not self.local:
      for index, path in self.logs.items():
        remote = self.run_dir / _log_name(index)
        before = remote.read_bytes() if remote.exists() else b''
        run_dir_lib.write_atomically(
            remote, lambda tmp: pathlib.Path(tmp).write_bytes(before + pathlib.Path(path)
                                                              .read_bytes()))
    shutil.rmtree(self.staging, ignore_errors=True)


def _hold(run_dir: str):
  """Waits until nothing else holds `run_dir`; the flock's fd (None in an object store, where
  process 0 of the run takes the lease itself)."""
  if run_dir_lib.is_local(run_dir):
    return wait_for_lock(run_dir)
  while run_dir_lib.live_lease(run_dir) is not None:
    time.sleep(LEASE_POLL_S)
  return None


def run_process(spec: dict, index: int = 0, coordinator: str | None = None) -> int:
  """Runs process `index` of a run to its end and returns its exit code (the body of a Ray task).

  Process 0 waits for the run directory's lock; every process returns 0 at once if the run has
  finished meanwhile. The training process is killed if this worker dies.
  """
  fd = _hold(spec['run_dir']) if index == 0 else None
  try:
    if (run_dir_lib.as_path(spec['run_dir']) / run_dir_lib.SUMMARY_FILE).exists():
      return 0
    group = Group(spec, [index], fd, coordinator, die_with_parent=True)
    try:
      return group.wait()
    except BaseException:  # cancelled: let the run save a checkpoint
      group.stop()
      raise
  finally:
    if fd is not None:
      os.close(fd)


def coordinator_address() -> str:
  """'ip:port' on the node that runs it (a Ray task in the bundle of a run's process 0)."""
  import ray
  return f'{ray.util.get_node_ip_address()}:{free_port()}'


# ---- executors -------------------------------------------------------------------------------

class LocalExecutor:
  """Subprocesses on this machine; with several runs at once, each pinned to its own CPUs (a
  multi-host run's processes share its CPUs)."""

  def __init__(self, max_concurrent: int, cpus_per_run: int | None = None,
               hosts_per_run: int = 1):
    self.max_concurrent, self.hosts = max_concurrent, hosts_per_run
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    per = cpus_per_run or (len(available) // max_concurrent if max_concurrent > 1 else 0)
    self.slots = collections.deque(
        available[i * per:(i + 1) * per] if per and (i + 1) * per <= len(available) else None
        for i in range(max_concurrent))
    self.threads = per or None
    self.running = {}  # run_id -> (run, group, slot)

  def active(self) -> int:
    return len(self.running)

  def start(self, run: Run, begin: Callable[[Run], None]) -> str:
    """'started', 'busy' (another process holds the run) or 'done' (it finished meanwhile)."""
    if run_dir_lib.is_local(run.run_dir):
      fd = try_lock(run.run_dir)
      if fd is None:
        return 'busy'
    elif run_dir_lib.live_lease(run.run_dir) is not None:
      return 'busy'
    else:
      fd = None  # process 0 of the run takes the lease
    try:
      if (run.run_dir / run_dir_lib.SUMMARY_FILE).exists():
        return 'done'
      slot = self.slots.popleft()
      begin(run)
      coordinator = f'127.0.0.1:{free_port()}' if self.hosts > 1 else None
      group = Group(process_spec(run, self.threads, slot, self.hosts), range(self.hosts), fd,
                    coordinator)
      self.running[run.run_id] = (run, group, slot)
      return 'started'
    finally:
      if fd is not None:
        os.close(fd)  # the children hold the lock now

  def poll(self, timeout: float) -> list[tuple[Run, int]]:
    deadline = time.monotonic() + timeout
    while True:
      done = [(run_id, group.poll()) for run_id, (_, group, _) in self.running.items()]
      done = [(run_id, rc) for run_id, rc in done if rc is not None]
      if done or time.monotonic() >= deadline:
        break
      time.sleep(0.1)
    out = []
    for run_id, rc in done:
      run, _, slot = self.running.pop(run_id)
      self.slots.append(slot)
      out.append((run, rc))
    return out

  def close(self) -> None:
    pass

  def stop(self) -> list[tuple[Run, int]]:
    for _, group, _ in self.running.values():
      for process in group.processes:
        if process.poll() is None:
          process.send_signal(signal.SIGTERM)
    for _, group, _ in self.running.values():
      group.stop()
    return self.poll(0)


class RayExecutor:
  """Each run a Ray task per host holding its CPUs/GPUs/TPUs, running the same training process;
  a multi-host run's tasks are placed together by a placement group."""

  def __init__(self, max_concurrent: int, cpus_per_run: int | None = None,
               gpus_per_run: float | None = None, address: str | None = None, log=print,
               hosts_per_run: int = 1, tpus_per_host: float | None = None,
               placement: str = 'STRICT_SPREAD'):
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
    self.cpus, self.gpus, self.tpus = cpus_per_run or 1, gpus_per_run, tpus_per_host or 0
    self.max_concurrent, self.hosts, self.placement = max_concurrent, hosts_per_run, placement
    resources = {'TPU': self.tpus} if self.tpus else None
    self.task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, resources=resources,
                           max_retries=0)(run_process)
    self.address_task = ray.remote(num_cpus=0)(coordinator_address)
    self.pending = {}  # run_id -> (run, [ObjectRef per host], placement group or None)

  def active(self) -> int:
    return len(self.pending)

  def _bundle(self, group, index: int) -> dict:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    return {'scheduling_strategy': PlacementGroupSchedulingStrategy(
        group, placement_group_bundle_index=index)}

  def start(self, run: Run, begin: Callable[[Run], None]) -> str:
    if (run.run_dir / run_dir_lib.SUMMARY_FILE).exists():
      return 'done'
    begin(run)
    spec = process_spec(run, self.cpus, hosts=self.hosts)
    if self.hosts == 1:
      self.pending[run.run_id] = (run, [self.task.remote(spec)], None)
      return 'started'
    bundle = {'CPU': self.cpus, **({'GPU': self.gpus} if self.gpus else {}),
              **({'TPU': self.tpus} if self.tpus else {})}
    group = self.ray.util.placement_group([bundle] * self.hosts, strategy=self.placement)
    self.ray.get(group.ready())
    coordinator = self.ray.get(self.address_task.options(**self._bundle(group, 0)).remote())
    refs = [self.task.options(**self._bundle(group, i)).remote(spec, i, coordinator)
            for i in range(self.hosts)]
    self.pending[run.run_id] = (run, refs, group)
    return 'started'

  def _result(self, refs) -> int | None:
    """The run's exit code once all its tasks are done or one failed (the rest cancelled)."""
    ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
    codes = []
    for ref in ready:
      try:
        codes.append(self.ray.get(ref))
      except Exception:  # the task or its worker died
        codes.append(-1)
    failed = [c for c in codes if c != 0]
    if failed:
      for ref in refs:
        if ref not in ready:
          self.ray.cancel(ref, force=True)  # its training process dies with the worker
      return failed[0]
    return 0 if len(ready) == len(refs) else None

  def poll(self, timeout: float) -> list[tuple[Run, int]]:
    if not self.pending:
      return []
    every = [ref for _, refs, _ in self.pending.values() for ref in refs]
    self.ray.wait(every, num_returns=1, timeout=timeout)
    out = []
    for run_id in list(self.pending):
      run, refs, group = self.pending[run_id]
      rc = self._result(refs)
      if rc is not None:
        del self.pending[run_id]
        if group is not None:
          self.ray.util.remove_placement_group(group)
        out.append((run, rc))
    return out

  def close(self) -> None:
    if self.owns_ray:
      self.ray.shutdown()

  def stop(self) -> list[tuple[Run, int]]:
    for _, refs, _ in self.pending.values():
      for ref in refs:
        self.ray.cancel(ref)  # KeyboardInterrupt in the task: it SIGTERMs its run
    out = []
    deadline = time.monotonic() + STOP_GRACE_S
    while self.pending and time.monotonic() < deadline:
      out += self.poll(1.0)
    return out
