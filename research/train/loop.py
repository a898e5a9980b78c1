"""The training loop: resume, step, log, evaluate, checkpoint, guard, summarise.

Host work never stalls the device: step t's metrics are fetched after step t+1 is dispatched. A
checkpoint is only written once the metrics of its step passed the spike guard, so the latest
checkpoint is always a good one to roll back to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time

import flax.linen as nn
import jax
import ml_collections
from jax.experimental import multihost_utils

from research import run_dir
from research.config import base_config
from research.data import build_data
from research.model import counting
from research.parallel import sharding as sharding_lib
from research.parallel.mesh import make_mesh
from research.parallel.rules import as_rules
from research.train import branch
from research.train import checkpoint as ckpt
from research.train import metrics as metrics_lib
from research.train import wandb_logger
from research.train.guards import SpikeDetector
from research.train.mfu import measure_peak_flops
from research.train.program import build_program
from research.train.schedules import make_schedule
from research.train.step import evaluate
from research.train.validate import validate_config


class Diverged(RuntimeError):
  """Raised inside the loop when rollbacks stop helping."""


@dataclasses.dataclass
class LoopState:
  """Host-side bookkeeping checkpointed beside the train state (as JSON)."""
  rollbacks_in_a_row: int = 0
  rollbacks_total: int = 0
  batches_skipped: int = 0
  wall_time_s: float = 0.0
  steady_time_s: float = 0.0  # wall time of steps that were not the first after a (re)start
  steady_steps: int = 0
  spike_history: list = dataclasses.field(default_factory=list)


class _Preemption:
  """Turns SIGTERM into a flag the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _progress_bar(total: int, initial: int):
  """A tqdm bar with ETA on an interactive terminal; nothing otherwise."""
  if not sys.stderr.isatty() or jax.process_index() != 0:
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True)


def _build_data_in_turn(config, tokenizer_path):
  """Process 0 builds (and caches) the corpus and tokenizer first; the others then read them."""
  args = (config, tokenizer_path, jax.process_index(), jax.process_count())
  if jax.process_count() == 1:
    return build_data(*args)
  data = build_data(*args) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices('data built')
  return data or build_data(*args)


PROFILE_AFTER_STEPS, PROFILE_STEPS = 5, 3


def train(config: ml_collections.ConfigDict, workdir, batch_hook=None, log=print,
          profile: bool = False) -> dict:
  """Trains `config` in `workdir` (resuming if a checkpoint is there) and returns the summary.

  `batch_hook(step, batch) -> batch` may replace a batch before it is used (tests inject corrupt
  data with it). `profile` writes a `jax.profiler` trace of a few steps, after compilation and
  warm-up, into `workdir/profile`. A finished run returns its summary without training.
  """
  validate_config(config)
  workdir = run_dir.as_path(workdir)
  log = log if jax.process_index() == 0 else lambda *_: None
  if (done := _finished(workdir, log)) is not None:
    return done
  mesh = make_mesh(config.mesh)
  rules = as_rules(config.mesh.rules)
  # Process 0 holds the run directory for as long as it trains: a second process is refused.
  ttl_s = config.train.get('lease_ttl_s', run_dir.LEASE_TTL_S)  # older run configs lack it
  lock = (run_dir.RunLock(workdir, config.train.run_lock, ttl_s) if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock, jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    if (done := _finished(workdir, log)) is not None:  # finished while we waited to start
      return done
    return _train(config, workdir, mesh, rules, batch_hook, log, profile)


def _finished(workdir, log) -> dict | None:
  """The summary of a finished run in `workdir`, or None."""
  done = run_dir.read_summary(workdir)
  if done is not None:
    log(f'{workdir} already holds a finished run (status {done["status"]!r}, step '
        f'{done["step"]}); nothing to do. Use a new --workdir to train again.')
  return done


def _last_logged(workdir, key: str, step: int, default: float) -> float:
  """The value of `key` logged at `step` in metrics.jsonl (process 0 reads it), else `default`."""
  if jax.process_index() != 0 or not (workdir / run_dir.METRICS_FILE).exists():
    return default
  values = [r[key] for r in run_dir.metric_records(workdir) if r.get('step') == step and key in r]
  return float(values[-1]) if values else default


def _train(config, workdir, mesh, rules, batch_hook, log, profile) -> dict:
  """The loop itself, inside the mesh and its axis rules, holding the run directory."""
  changed = []
  if jax.process_index() == 0:
    changed = run_dir.claim(workdir, config, base_config().to_dict())
    for change in changed:
      log(f'resuming with a changed execution field: {change}')
  m, t = config.model, config.train
  if t.init_from.run_dir and not (workdir / run_dir.CHECKPOINT_DIR).exists():
    branch.check_parent(config)  # fail before the data is built

  data = _build_data_in_turn(config, str(workdir / run_dir.TOKENIZER_FILE))
  initial_iterator_state = data.train_iter.get_state()
  schedule = make_schedule(t)
  program = build_program(config, mesh, rules)
  batch_sharding = program.batch_sharding
  fresh_state = program.init_state
  state = fresh_state()
  fresh_state_abstract = ckpt.abstract_like(state)
  manager = ckpt.make_manager(workdir, t.keep_checkpoints, preserve=t.save_steps)
  checksums = ckpt.ChecksumRecorder(workdir, manager, t.verify_checkpoints)
  loop = LoopState()
  restored = ckpt.restore_at_start(manager, workdir, fresh_state_abstract, data.train_iter,
                                   checksums, log)
  if restored is not None:
    _, state, meta = restored
    loop = LoopState(**meta)
  elif t.init_from.run_dir:
    state = branch.restore_parent(config, fresh_state_abstract, data.train_iter)
    log(f'started from step {t.init_from.step} of {t.init_from.run_dir}')
  metrics_lib.truncate_after(workdir, int(state.step))
  guard = SpikeDetector(t.spike_threshold, t.spike_window, history=loop.spike_history)

  train_step = program.train_step
  eval_step = lambda params, batch: program.eval_step(
      params, sharding_lib.global_batch(batch, batch_sharding))
  peak_flops = measure_peak_flops()
  seq_len = config.data.seq_len
  tokens_per_step = t.batch_size * seq_len
  flops_per_token = counting.flops_report(m, seq_len)
  counts = counting.predict_param_counts(m)
  active = counting.predict_param_counts(m, active=True)  # differs from counts for MoE only
  writer = metrics_lib.MetricsWriter(
      workdir, trackers=wandb_logger.trackers(config, workdir) if jax.process_index() == 0 else ())
  if changed:
    writer.write({'step': int(state.step), 'event': 'execution_changed', 'changes': changed})
  log(f'model: {counts.total:,} params ({counts.non_embedding:,} non-embedding'
      f'{f"; {active.total:,} active per token" if m.num_experts else ""}); '
      f'{tokens_per_step:,} tokens/step; peak {peak_flops / 1e9:.1f} GFLOP/s measured')
  epochs = t.num_steps * tokens_per_step / data.train_tokens
  log(f'data: {data.train_tokens:,} train tokens ({epochs:.2f} epochs in {t.num_steps} steps), '
      f'{data.validation_tokens:,} validation tokens')

  def save(step):
    loop.spike_history = list(guard.history)
    writer.flush()  # an object store's metrics.jsonl then holds every line up to `step`
    ckpt.save(manager, step, state, data.train_iter, dataclasses.asdict(loop))
    checksums.saved()

  def rollback(bad_step: int, why: str):
    """Back to the latest good checkpoint, skipping every batch up to and past the bad one."""
    nonlocal state
    loop.rollbacks_in_a_row += 1
    loop.rollbacks_total += 1
    if loop.rollbacks_in_a_row > t.max_rollbacks:
      raise Diverged(f'{why} at step {bad_step}; {t.max_rollbacks} rollbacks in a row did not '
                     'get past it')
    checksums.wait()
    if jax.process_count() > 1:  # process 0 has recorded the checksums the others will check
      multihost_utils.sync_global_devices('checksums recorded')
    try:  # the newest checkpoint that verifies and holds finite parameters
      good, state, meta = ckpt.restore_newest_good(manager, workdir, fresh_state_abstract,
                                                   data.train_iter, log)
      guard.restart(meta.get('spike_history', ()))
    except ckpt.NoGoodCheckpoint:
      guard.restart()
      if t.init_from.run_dir:  # a branch: back to its parent's checkpoint
        state = branch.restore_parent(config, fresh_state_abstract, data.train_iter)
        good = t.init_from.step
      else:
        state = fresh_state()
        data.train_iter.set_state(initial_iterator_state)
        good = 0
    skip = bad_step - good + t.skip_batches_after_rollback
    for _ in range(skip):
      next(data.train_iter)
    loop.batches_skipped += skip
    writer.truncate_after(good)
    writer.write({'step': good, 'event': 'rollback', 'reason': why, 'bad_step': bad_step,
                  'batches_skipped': skip})
    log(f'rollback: {why} at step {bad_step}; restored step {good}, skipped {skip} batches')
    return good

  step = int(state.step)
  profile_window = (step + PROFILE_AFTER_STEPS, step + PROFILE_AFTER_STEPS + PROFILE_STEPS)
  pending = None  # (step, device metrics) of the last dispatched step
  last_time = time.perf_counter()
  first_after_start = True
  last_train_loss = float('nan')
  eval_metrics = {}
  status = 'completed'
  bar = _progress_bar(t.num_steps, step)

  def check(pending_step, device_metrics) -> bool:
    """Fetch a step's metrics, log them, and say whether they passed the guard."""
    nonlocal last_time, last_train_loss, first_after_start
    values = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    now = time.perf_counter()
    step_time = now - last_time
    last_time = now
    loop.wall_time_s += step_time
    if not first_after_start:  # the first step after a start includes compilation
      loop.steady_time_s += step_time
      loop.steady_steps += 1
    first_after_start = False
    if guard.is_bad(values['loss'], values['grad_norm']):
      return False
    guard.accept(values['loss'])
    last_train_loss = values['loss']
    if pending_step % t.log_every == 0 or pending_step == t.num_steps:
      record = {'step': pending_step, **values, 'learning_rate': float(schedule(pending_step - 1)),
                'tokens': pending_step * tokens_per_step, 'step_time_s': step_time,
                'tokens_per_sec': tokens_per_step / step_time,
                'mfu': tokens_per_step / step_time * flops_per_token['palm'] / peak_flops}
      writer.write(record)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(loss=f'{values["loss"]:.3f}')
    return True

  with _Preemption() as preemption:
    try:
      while step < t.num_steps:
        if profile and step == profile_window[0]:
          jax.profiler.start_trace(str(workdir / run_dir.PROFILE_DIR))
        elif profile and step == profile_window[1]:
          jax.block_until_ready(state)
          jax.profiler.stop_trace()
          log(f'profile of steps {profile_window[0] + 1}..{step} written to '
              f'{workdir / run_dir.PROFILE_DIR}')
        batch = next(data.train_iter)
        if batch_hook is not None:
          batch = batch_hook(step, batch)
        state, device_metrics = train_step(state,
                                           sharding_lib.global_batch(batch, batch_sharding))
        step += 1
        checksums.poll()
        if pending is not None and not check(*pending):
          step = rollback(pending[0], 'loss spike or non-finite loss')
          pending, last_time = None, time.perf_counter()
          if bar is not None:
            bar.n = step
          continue
        pending = (step, device_metrics)
        boundary = (step % t.checkpoint_every == 0 or step == t.num_steps
                    or step in t.save_steps)
        if boundary or preemption.requested or step % t.eval_every == 0:
          ok = check(*pending)
          pending = None
          if not ok:
            step = rollback(step, 'loss spike or non-finite loss')
            last_time = time.perf_counter()
            if bar is not None:
              bar.n = step
            continue
          if step % t.eval_every == 0 or step == t.num_steps:
            eval_metrics = evaluate(eval_step, state.params, data.eval_set)
            writer.write({'step': step, **eval_metrics})
            last_time = time.perf_counter()
          if boundary or preemption.requested:
            save(step)
            loop.rollbacks_in_a_row = 0
          if preemption.requested:
            manager.wait_until_finished()
            checksums.wait()
            log(f'SIGTERM: saved step {step}; run the same command to continue')
            writer.close()
            return {'status': 'preempted', 'step': step}
    except Diverged as e:
      status = 'diverged'
      log(f'diverged: {e}')
  manager.wait_until_finished()
  checksums.wait()
  if bar is not None:
    bar.close()
  if status == 'completed' and not eval_metrics:
    # Resumed from the final checkpoint (killed before the summary was written): the logged
    # final train loss, and the final evaluation again (deterministic: the same params and set).
    last_train_loss = _last_logged(workdir, 'loss', step, last_train_loss)
    eval_metrics = evaluate(eval_step, state.params, data.eval_set)
    writer.write({'step': step, **eval_metrics})

  tokens = step * tokens_per_step
  summary = {
      'status': status,
      'step': step,
      'final_train_loss': last_train_loss,
      'final_eval_loss': eval_metrics.get('eval_loss', float('nan')),
      'final_eval_bits_per_byte': eval_metrics.get('eval_bits_per_byte', float('nan')),
      'tokens': tokens,
      'params_total': counts.total,
      'params_embedding': counts.embedding,
      'params_non_embedding': counts.non_embedding,
      'params_active': active.total,  # used by each token: for MoE, k routed experts of E
      'params_active_non_embedding': active.non_embedding,
      'num_experts': m.num_experts,
      'flops': {name: per_token * tokens for name, per_token in flops_per_token.items()},
      'flops_per_token': flops_per_token,
      'wall_time_s': loop.wall_time_s,
      'tokens_per_sec': (loop.steady_steps * tokens_per_step / loop.steady_time_s
                         if loop.steady_time_s else 0.0),
      'peak_flops': peak_flops,
      'rollbacks': loop.rollbacks_total,
      'batches_skipped': loop.batches_skipped,
      'bytes_per_token': data.bytes_per_token,
      'unigram_entropy_nats': data.unigram_entropy_nats,
      'config_hash': run_dir.config_hash(config),
  }
  if t.init_from.run_dir:  # a branch: its own compute is the steps after its parent's
    summary['init_from'] = t.init_from.to_dict()
    summary['own_tokens'] = (step - t.init_from.step) * tokens_per_step
  if summary['tokens_per_sec']:
    summary['mfu'] = summary['tokens_per_sec'] * flops_per_token['palm'] / peak_flops
  writer.close()
  if jax.process_index() == 0:
    run_dir.write_json_atomically(workdir / run_dir.SUMMARY_FILE, summary)
  return summary
