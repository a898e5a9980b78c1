"""Runs a sweep: one training process per run, each in its own run directory.

A finished run (summary.json) is skipped; an interrupted one resumes from its checkpoints, because
the train CLI does that when rerun in the same directory; a failed or diverged one is recorded and
left alone unless `retry_failed`. The results table is rebuilt after every run. The plan (run ids,
configs) comes from `plan`, the processes from `executors`, the table from `table`.

Each training process holds a lock on its run directory for as long as it lives, so a sweep
restarted after its driver was killed waits for any run still going instead of starting it twice.
The sweep directory may be a URI (gs://bucket/sweep): the driver then holds a lease on it
instead of a flock, and each run's process 0 a lease on its run directory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import time
from typing import Sequence

import ml_collections

from research import run_dir as run_dir_lib
from research.sweeps import table
from research.sweeps.executors import EXECUTORS, ROOT, LocalExecutor, RayExecutor, now
from research.run_dir.lock import RunLock, try_lock
from research.sweeps.plan import Run, resolve_runs, write_run_files


def git_commit() -> str:
  """The code's commit, '-dirty' if tracked files changed; '' outside a git checkout."""
  try:
    commit = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True,
                            text=True, check=True, timeout=30).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(ROOT), 'status', '--porcelain',
                            '--untracked-files=no'], capture_output=True, text=True, check=True,
                           timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ''
  return commit + ('-dirty' if dirty else '')


def parent_dir(config: ml_collections.ConfigDict):
  """The run directory a branch starts from (`train.init_from.run_dir`), or None."""
  init = config.get('train', {}).get('init_from')
  return run_dir_lib.as_path(init.run_dir) if init is not None and init.get('run_dir') else None


def move_aside(run_dir):
  """Renames a run directory to `<run_id>.failed-<n>` (never deletes it); returns the new path."""
  run_dir, n = run_dir_lib.as_path(run_dir), 1
  while run_dir.with_name(f'{run_dir.name}.failed-{n}').exists():
    n += 1
  target = run_dir.with_name(f'{run_dir.name}.failed-{n}')
  run_dir_lib.move(run_dir, target)
  return target


def _update_runner_file(run_dir, **fields) -> dict:
  path = run_dir / run_dir_lib.RUNNER_FILE
  record = {**(run_dir_lib.read_json(path) or {}), **fields}
  run_dir_lib.write_json_atomically(path, record)
  return record


# ---- the sweep -------------------------------------------------------------------------------

@contextlib.contextmanager
def _sweep_lock(workdir):
  """One driver per sweep directory (a lease in an object store)."""
  if not run_dir_lib.is_local(workdir):
    with RunLock(workdir, 'lease', lease_file=run_dir_lib.SWEEP_LEASE_FILE):
      yield
    return
  fd = try_lock(workdir, run_dir_lib.SWEEP_LOCK_FILE)
  if fd is None:
    raise RuntimeError(f'{workdir}: another experiments.sweep is running in this directory')
  try:
    yield
  finally:
    os.close(fd)


def _select(runs: Sequence[Run], retry_failed: bool, log) -> list[Run]:
  """The runs to start: pending ones, plus failed/diverged ones if `retry_failed`."""
  todo = []
  for run in runs:
    status = table.run_status(run.run_dir)
    if status == 'completed':
      continue
    if status in ('failed', 'diverged') and not retry_failed:
      log(f'{run.label} ({run.run_id}): {status} before; not retried (use --retry-failed)')
      continue
    if status == 'diverged':  # its summary marks the directory finished: start afresh
      aside = move_aside(run.run_dir)
      log(f'{run.label} ({run.run_id}): diverged before; moved to {aside.name} and retried')
      write_run_files(run)
    todo.append(run)
  return todo


def run_sweep(sweep: Sequence[tuple[str, ml_collections.ConfigDict]], workdir, *,
              sweep_name: str = 'sweep', executor: str = 'local', max_concurrent: int = 1,
              retry_failed: bool = False, cpus_per_run: int | None = None,
              gpus_per_run: float | None = None, ray_address: str | None = None,
              shared_tokenizer: bool = True, hosts_per_run: int = 1,
              tpus_per_host: float | None = None, log=print) -> list[dict]:
  """Runs every run of `sweep` not finished yet in `workdir`; returns the sweep's table rows.

  `hosts_per_run` > 1 makes each run that many processes joined through `jax.distributed`.
  """
  if executor not in EXECUTORS:
    raise ValueError(f'executor={executor!r}: expected one of {EXECUTORS}')
  if max_concurrent < 1:
    raise ValueError(f'max_concurrent={max_concurrent}: must be at least 1')
  if hosts_per_run < 1:
    raise ValueError(f'hosts_per_run={hosts_per_run}: must be at least 1')
  workdir = run_dir_lib.absolute(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  runs = resolve_runs(sweep, workdir, sweep_name)
  with _sweep_lock(workdir):
    for run in runs:
      write_run_files(run)
    run_dir_lib.write_json_atomically(workdir / run_dir_lib.MANIFEST_FILE, {
        'name': sweep_name, 'runs': [{'run_id': r.run_id, 'label': r.label} for r in runs]})
    ours = {r.run_id for r in runs}
    others = [p.name for p in table.run_dirs(workdir) if p.name not in ours]
    if others:
      log(f'note: {len(others)} run directories in {workdir} are not in this sweep; they stay in '
          f'{run_dir_lib.RESULTS_FILE}')
    table.write_table(workdir)
    todo = _select(runs, retry_failed, log)
    log(f'{len(runs)} runs: {len(runs) - len(todo)} finished or skipped, {len(todo)} to run')
    if todo:
      from research.data.shared_tokenizers import prepare_data  # heavy: only when there is work
      prepare_data([(r.label, r.config, r.run_dir) for r in todo],
                   workdir / run_dir_lib.SHARED_TOKENIZERS_DIR, shared_tokenizer, log)
      pool = _executor(executor, max_concurrent, cpus_per_run, gpus_per_run, ray_address,
                       hosts_per_run, tpus_per_host, log)
      _execute(todo, workdir, executor, pool, max_concurrent, log)
    rows = table.write_table(workdir)
  counts = collections.Counter(r['status'] for r in rows if r['run_id'] in ours)
  log('sweep: ' + ', '.join(f'{counts[s]} {s}' for s in table.STATUSES if counts[s]) +
      f'; table {workdir / run_dir_lib.RESULTS_FILE}')
  return [r for r in rows if r['run_id'] in ours]


def _executor(executor, max_concurrent, cpus_per_run, gpus_per_run, ray_address, hosts_per_run,
              tpus_per_host, log):
  if executor == 'ray':
    return RayExecutor(max_concurrent, cpus_per_run, gpus_per_run, ray_address, log,
                       hosts_per_run=hosts_per_run, tpus_per_host=tpus_per_host)
  return LocalExecutor(max_concurrent, cpus_per_run, hosts_per_run)


def _execute(todo, workdir, executor: str, pool, max_concurrent, log) -> None:
  """Starts runs up to the concurrency cap, records each as it ends, rebuilds the table."""
  commit = git_commit()
  started = {}

  def begin(run: Run) -> None:
    record = run_dir_lib.read_json(run.run_dir / run_dir_lib.RUNNER_FILE) or {}
    _update_runner_file(run.run_dir, status='running', attempts=record.get('attempts', 0) + 1,
                        git_commit=commit, started=now(), ended=None, returncode=None,
                        executor=executor, hosts=pool.hosts)
    started[run.run_id] = time.monotonic()
    active.add(run.run_dir)
    log(f'start {run.label} ({run.run_id})')

  def finish(run: Run, rc: int, stopping: bool = False) -> None:
    active.discard(run.run_dir)
    summary = run_dir_lib.read_summary(run.run_dir)
    if summary is not None:
      state = 'finished'
    elif rc == 0 or stopping:  # stopped (SIGTERM: a checkpoint, then exit 0); resumes next time
      state = 'interrupted'
    else:
      state = 'failed'
    _update_runner_file(run.run_dir, status=state, returncode=rc, ended=now())
    table.write_table(workdir)
    took = time.monotonic() - started.get(run.run_id, time.monotonic())
    status = table.run_status(run.run_dir)
    if summary:
      detail = f'eval_loss={summary.get("final_eval_loss", float("nan")):.4f}'
    elif state == 'interrupted':
      status, detail = 'interrupted', 'checkpoint saved; it resumes when the sweep is rerun'
    else:
      detail = f'exit code {rc}; see {run.run_dir / run_dir_lib.LOG_FILE}'
    log(f'{status} {run.label} ({run.run_id}) in {took:.0f} s: {detail}')

  queue = collections.deque(todo)
  waiting_logged = set()
  active = set()  # run directories started and not finished

  def waits_for_parent(run: Run) -> bool:
    """A branch whose parent is still queued or training starts after it."""
    parent = parent_dir(run.config)
    if parent is None or run_dir_lib.read_summary(parent) is not None:
      return False
    return parent in active or any(r.run_dir == parent for r in queue)

  try:
    while queue or pool.active():
      for _ in range(len(queue)):
        if pool.active() >= max_concurrent:
          break
        run = queue.popleft()
        if waits_for_parent(run):
          queue.append(run)
          continue
        outcome = pool.start(run, begin)
        if outcome == 'busy':
          queue.append(run)
          if run.run_id not in waiting_logged:
            waiting_logged.add(run.run_id)
            log(f'{run.label} ({run.run_id}) is held by another process (a run left by an '
                'earlier sweep); waiting for it')
        elif outcome == 'done':
          log(f'completed {run.label} ({run.run_id}) by another process')
          table.write_table(workdir)
      for run, rc in pool.poll(timeout=1.0):
        finish(run, rc)
  except BaseException:
    log('stopping: runs in progress save a checkpoint and resume when the sweep is rerun')
    for run, rc in pool.stop():
      finish(run, rc, stopping=True)
    table.write_table(workdir)
    raise
  finally:
    pool.close()
