"""Whole-config checks that must fail before any data is read or anything is compiled."""

from __future__ import annotations

import jax
import ml_collections

from research.data.corpus import CORPORA
from research.run_dir.lock import LOCK_KINDS
from research.run_dir.paths import is_local
from research.model.config import validate_model_config
from research.parallel.mesh import resolve_shape
from research.train.schedules import SCHEDULES


def _fail(field: str, value, why: str):
  raise ValueError(f'{field}={value!r}: {why}')


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Raises ValueError naming the field for any impossible setting."""
  for section in ('model', 'data', 'train'):
    if section not in config:
      _fail(section, None, 'missing section; start configs from research.config.base_config()')
  validate_model_config(config.model)
  t, d, m = config.train, config.data, config.model
  for field in ('batch_size', 'num_steps', 'grad_accum_steps', 'log_every', 'eval_every',
                'checkpoint_every', 'keep_checkpoints'):
    if t[field] <= 0:
      _fail(f'train.{field}', t[field], 'must be a positive integer')
  if d.seq_len <= 0:
    _fail('data.seq_len', d.seq_len, 'must be a positive integer')
  if d.seq_len > m.max_seq_len:
    _fail('data.seq_len', d.seq_len, f'exceeds the model context model.max_seq_len={m.max_seq_len}')
  if t.schedule not in SCHEDULES:
    _fail('train.schedule', t.schedule, f'unknown; expected one of {SCHEDULES}')
  if t.warmup_steps < 0:
    _fail('train.warmup_steps', t.warmup_steps, 'must be >= 0')
  if not isinstance(t.loss_chunk_len, int) or t.loss_chunk_len < 0:
    _fail('train.loss_chunk_len', t.loss_chunk_len, 'must be an integer >= 0 (0 turns chunking off)')
  if t.learning_rate <= 0:
    _fail('train.learning_rate', t.learning_rate, 'must be positive')
  if t.batch_size % t.grad_accum_steps:
    _fail('train.batch_size', t.batch_size,
          f'must be divisible by train.grad_accum_steps={t.grad_accum_steps}')
  num_devices = num_devices or jax.device_count()
  ici, dcn = resolve_shape(config.mesh.ici, config.mesh.dcn, num_devices)
  batch_shards = ici[0] * ici[1] * dcn[0] * dcn[1]  # the mesh's data x fsdp
  micro = t.batch_size // t.grad_accum_steps
  if micro % batch_shards:
    _fail('train.batch_size', t.batch_size, f'each micro-batch ({micro} sequences) must divide '
          f'evenly over the {batch_shards} batch shards (mesh data x fsdp)')
  if t.batch_size % jax.process_count():
    _fail('train.batch_size', t.batch_size,
          f'must be divisible by the number of processes ({jax.process_count()})')
  if t.run_lock not in LOCK_KINDS:
    _fail('train.run_lock', t.run_lock, f'unknown; expected one of {LOCK_KINDS}')
  if not t.lease_ttl_s > 0:
    _fail('train.lease_ttl_s', t.lease_ttl_s, 'must be positive')
  if not 0 < d.validation_fraction < 1:
    _fail('data.validation_fraction', d.validation_fraction, 'must be in (0, 1)')
  if d.corpus not in CORPORA:
    _fail('data.corpus', d.corpus, f'unknown; expected one of {CORPORA}')
  if d.corpus == 'text_dir' and not d.text_dir:
    _fail('data.text_dir', d.text_dir, "required when data.corpus='text_dir'")
  if d.corpus == 'tfds' and not d.tfds_name:
    _fail('data.tfds_name', d.tfds_name, "required when data.corpus='tfds'")
  if d.corpus == 'hf' and not d.hf_name:
    _fail('data.hf_name', d.hf_name, "required when data.corpus='hf'")
  if d.hf_max_documents < 0:
    _fail('data.hf_max_documents', d.hf_max_documents, 'must be >= 0 (0 reads every document)')
  if d.data_dir and not is_local(d.data_dir):
    _fail('data.data_dir', d.data_dir, 'must be a local directory (the token streams are '
          'memory-mapped); run directories may be in a bucket, the data cache may not')
