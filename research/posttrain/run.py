"""A post-training run: `posttrain(config, workdir)` for every stage, in a run directory.

Like pretraining: the run claims its directory (one with another config is refused) and holds it
(a second process is refused), saves its tokenizer, checkpoints the train state with the data
iterator's position through Orbax with each checkpoint's checksums, resumes from the newest
checkpoint that verifies bitwise-exactly (rollouts are seeded by the step), logs every step to
metrics.jsonl and writes summary.json last; a finished run is a no-op. Records and sources are
read and checked before the directory is touched, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time

import flax.linen as nn
import grain
import jax
import ml_collections
import numpy as np

from research import run_dir
from research.data import pipeline
from research.data import tokenizer as tokenizer_lib
from research.parallel import sharding as sharding_lib
from research.parallel.mesh import make_mesh
from research.parallel.rules import as_rules
from research.posttrain import chat
from research.posttrain import reward_model
from research.posttrain import sources as sources_lib
from research.posttrain import state as state_lib
from research.posttrain.config import (RECORD_KIND, REFERENCE_STAGES, RL_STAGES,
                                       validate_against_model, validate_posttrain_config)
from research.posttrain.records import read_records
from research.posttrain.stages import Context, make_stage
from research.posttrain.tasks import get_task
from research.train import checkpoint as ckpt
from research.train import metrics as metrics_lib

_ENDLESS_ROWS = 2**40  # rows the iterator repeats for in all: endless in practice


class _TakeRows(grain.transforms.Map):
  """Row index -> that row of every array (a picklable map for grain)."""

  def __init__(self, arrays: dict):
    self.arrays = arrays

  def map(self, index):
    return {k: v[index] for k, v in self.arrays.items()}


def row_iterator(arrays: dict, batch_size: int, seed: int) -> grain.DatasetIterator:
  """Batches of rows, reshuffled every epoch, endless; its state is checkpointed with the run."""
  rows = len(next(iter(arrays.values())))
  dataset = (grain.MapDataset.range(rows).shuffle(seed=seed)
             .repeat(max(1, _ENDLESS_ROWS // rows)).map(_TakeRows(arrays)).batch(batch_size))
  return pipeline.iterate(dataset)


def _resolve(config: ml_collections.ConfigDict):
  """-> (resolved config, policy source, reference source, reward-model source): the model
  section and what each source was (config hash, step) recorded in the config."""
  p = config.posttrain
  policy = sources_lib.as_policy(sources_lib.read_source(p.init_from, 'posttrain.init_from'),
                                 'posttrain.init_from')
  reference = reward = None
  if p.stage in REFERENCE_STAGES:
    path = p.reference or p.init_from
    reference = policy if path == p.init_from else sources_lib.as_policy(
        sources_lib.read_source(path, 'posttrain.reference'), 'posttrain.reference')
    sources_lib.check_compatible(reference, 'posttrain.reference', policy, 'posttrain.init_from',
                                 same_model=True)
  if p.stage in RL_STAGES and (p.reward == 'model' or p.reward_from):
    if not p.reward_from:
      raise ValueError("posttrain.reward_from='': required when posttrain.reward='model'")
    reward = sources_lib.as_reward_model(
        sources_lib.read_source(p.reward_from, 'posttrain.reward_from'), 'posttrain.reward_from')
    sources_lib.check_compatible(reward, 'posttrain.reward_from', policy, 'posttrain.init_from',
                                 same_model=False)
    if reward.model_config.max_seq_len < p.seq_len:
      raise ValueError(f'posttrain.reward_from={p.reward_from!r}: its context '
                       f'model.max_seq_len={reward.model_config.max_seq_len} is shorter than '
                       f'posttrain.seq_len={p.seq_len}')
  resolved = ml_collections.ConfigDict(config.to_dict())
  if 'model' in resolved:
    diff = run_dir.config_diff(resolved.model.to_dict(), policy.model_config.to_dict())
    if diff:
      raise ValueError('model: a post-training config takes its model from posttrain.init_from; '
                       'the given model section differs: ' + '; '.join(diff))
  resolved.model = policy.model_config
  resolved.sources = {name: s.identity for name, s in (('init_from', policy),
                                                       ('reference', reference),
                                                       ('reward_from', reward)) if s is not None}
  validate_against_model(resolved)
  return resolved, policy, reference, reward


def _claim(workdir: pathlib.Path, config, tokenizer) -> None:
  """The directory for this config, with its tokenizer (the run's, chat tokens included)."""
  run_dir.claim(workdir, config)
  path = workdir / run_dir.TOKENIZER_FILE
  if path.exists():
    if tokenizer_lib.fingerprint(tokenizer_lib.load_tokenizer(str(path))) != \
        tokenizer_lib.fingerprint(tokenizer):
      raise ValueError(f'{path}: differs from the tokenizer of posttrain.init_from; the source '
                       'changed since this run started')
  else:
    tokenizer_lib.save_tokenizer(tokenizer, str(path))


RESOLVED_SECTIONS = ('model', 'sources')  # added to the config by the run, from its sources


def _check_same_config(workdir: pathlib.Path, config) -> None:
  """ValueError unless the finished run in `workdir` was run with `config` (the sections the run
  resolves itself compared only when `config` has them)."""
  old, new = run_dir.read_config(workdir) or {}, json.loads(run_dir.config_json(config))
  for section in RESOLVED_SECTIONS:
    if section not in new:
      old.pop(section, None)
  diff = run_dir.config_diff(old, new)
  if diff:
    raise ValueError(f'{workdir} holds a finished run of a different config; use a new --workdir '
                     'or the same config. Differences:\n  ' + '\n  '.join(diff))


def posttrain(config: ml_collections.ConfigDict, workdir, log=print) -> dict:
  """Runs the post-training stage of `config` in `workdir` (resuming it) -> its summary."""
  validate_posttrain_config(config)
  workdir = pathlib.Path(workdir)
  done = run_dir.read_summary(workdir)
  if done is not None:
    _check_same_config(workdir, config)
    log(f'{workdir} already holds a finished run (status {done["status"]!r}, step '
        f'{done["step"]}); nothing to do. Use a new --workdir to run again.')
    return done
  mesh = make_mesh(config.mesh)
  rules = as_rules(config.mesh.rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    return _posttrain(config, workdir, mesh, rules, log)


def _posttrain(config, workdir: pathlib.Path, mesh, rules, log) -> dict:
  config, policy, reference, reward = _resolve(config)
  p, t, m = config.posttrain, config.train, config.model
  template = chat.ChatTemplate.of(policy.tokenizer)
  kind = RECORD_KIND[p.stage]
  train_records = read_records(p.train_file, kind, 'posttrain.train_file')
  eval_records = read_records(p.eval_file, kind, 'posttrain.eval_file') if p.eval_file else []
  optimizer, schedule = state_lib.optimizer_and_schedule(config)
  shardings = state_lib.state_shardings_for(p.stage, m, optimizer, mesh, rules)
  ctx = Context(config=config, template=template, mesh=mesh, rules=rules, shardings=shardings,
                optimizer=optimizer, task=get_task(p.task) if p.task else None,
                reference_params=None, reward_model=None, eval_records=eval_records)
  stage = make_stage(ctx, train_records)
  train_rows = stage.rows(train_records)  # checks every record's length
  if eval_records:
    stage.rows(eval_records[:p.eval_prompts])
  num_rows = len(train_records)
  if t.batch_size > num_rows:
    raise ValueError(f'train.batch_size={t.batch_size}: more than the {num_rows} records of '
                     f'posttrain.train_file={p.train_file!r}')

  # Process 0 holds the run directory from its claim to its summary: a second one is refused.
  with (run_dir.RunLock(workdir, t.run_lock, t.lease_ttl_s) if jax.process_index() == 0
        else contextlib.nullcontext()):
    if (done := run_dir.read_summary(workdir)) is not None:  # finished while this one started
      _check_same_config(workdir, config)
      log(f'{workdir}: finished by another process (step {done["step"]}); nothing to do')
      return done
    _claim(workdir, config, policy.tokenizer)
    if reference is not None:
      ctx.reference_params = jax.device_put(jax.tree.map(np.asarray, reference.params),
                                            shardings.params['policy'] if p.stage == 'ppo'
                                            else shardings.params)
    if reward is not None:
      reward_shardings = sharding_lib.logical_shardings(
          reward_model.abstract_params(reward.model_config, boxed=True), mesh, rules)
      ctx.reward_model = (reward.model_config,
                          jax.device_put(jax.tree.map(np.asarray, reward.params), reward_shardings))
    state = state_lib.make_state(state_lib.initial_params(p.stage, m, policy.params, t.seed),
                                 optimizer, shardings)
    abstract = ckpt.abstract_like(state)
    data = row_iterator(train_rows, t.batch_size, t.seed)
    manager = ckpt.make_manager(workdir, t.keep_checkpoints)
    meta = {'wall_time_s': 0.0}
    checksums = ckpt.ChecksumRecorder(workdir, manager, t.verify_checkpoints)
    step = 0
    restored = ckpt.restore_at_start(manager, workdir, abstract, data, checksums, log)
    if restored is not None:
      step, state, meta = restored
    metrics_lib.truncate_after(workdir, step if step else -1)  # a fresh start logs step 0 again
    writer = metrics_lib.MetricsWriter(workdir)
    log(f'{p.stage}: {num_rows} records from {p.train_file}, {t.num_steps} steps of '
        f'{t.batch_size}; model {m.num_layers} layers x {m.d_model}, vocab {m.vocab_size}')
    if eval_records and step == 0:  # where the stage starts from: step 0 of its curves
      writer.write({'step': 0, **stage.evaluate(state)})
    clock = time.perf_counter()
    while step < t.num_steps:
      state, device_metrics = stage.step(state, next(data), step)
      step += 1
      checksums.poll()
      final = step == t.num_steps
      if step % t.log_every == 0 or final:
        values = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        now = time.perf_counter()
        meta['wall_time_s'] += now - clock
        clock = now
        writer.write({'step': step, **values,
                      'learning_rate': float(schedule(max(int(state.step) - 1, 0))),
                      'wall_time_s': meta['wall_time_s']})
      if eval_records and (step % t.eval_every == 0 or final):
        writer.write({'step': step, **stage.evaluate(state)})
      if step % t.checkpoint_every == 0 or final:
        now = time.perf_counter()
        meta['wall_time_s'] += now - clock
        clock = now
        ckpt.save(manager, step, state, data, dict(meta))
        checksums.saved()
    checksums.wait()
    writer.close()
    summary = {'status': 'completed', 'stage': p.stage, 'step': step,
               'wall_time_s': meta['wall_time_s'], 'config_hash': run_dir.config_hash(config),
               **_final_metrics(workdir)}
    run_dir.write_json_atomically(workdir / run_dir.SUMMARY_FILE, summary)
    log(f'{p.stage} done: step {step}, ' + ', '.join(
        f'{k}={v:.4g}' for k, v in summary.items() if k.startswith('eval_')))
    return summary


def _final_metrics(workdir) -> dict:
  """The last training line's metrics as final_<name>, and the last evaluation's eval_<name>."""
  train, evaluation = {}, {}
  for record in run_dir.metric_records(workdir):
    if any(k.startswith('eval_') for k in record):
      evaluation = {k: v for k, v in record.items() if k.startswith('eval_')}
    else:
      train = {f'final_{k}': v for k, v in record.items() if k not in ('step', 'wall_time_s')}
  return {**train, **evaluation}
