"""Whole-config checks that must fail before any data is read or anything is compiled."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import ml_collections

from research.data import clean
from research.data import mixture
from research.data import objectives
from research.data import tokenizer_kinds
from research.data.corpus import CORPORA
from research.run_dir.lock import LOCK_KINDS
from research.run_dir.paths import is_local
from research.model.config import mamba_field, mtp_field, validate_model_config
from research.parallel.mesh import MESH_AXES, resolve_shape
from research.parallel.rules import as_rules
from research.train.pipelining import check_pipeline
from research.train.schedules import DECAY_SHAPES, SCHEDULES, cooldown_steps


def _fail(field: str, value, why: str):
  raise ValueError(f'{field}={value!r}: {why}')


def _validate_init_from(t: ml_collections.ConfigDict) -> None:
  """A run started from another's checkpoint: the step lies inside this run, and a wsd cooldown
  does not begin before it (the branch would start mid-decay)."""
  init = t.init_from
  if not init.run_dir:
    return
  if not isinstance(init.step, int) or not 0 < init.step < t.num_steps:
    _fail('train.init_from.step', init.step, f'must be an integer in [1, train.num_steps='
          f'{t.num_steps}): the step of the parent checkpoint this run continues from')
  if t.schedule == 'wsd':
    cooldown = cooldown_steps(t)
    if cooldown > t.num_steps - init.step:
      _fail('train.decay_fraction', t.decay_fraction,
            f'the cooldown of {cooldown} steps is longer than the {t.num_steps - init.step} '
            f'steps this run trains after its parent\'s step {init.step} '
            '(train.init_from.step); lower the fraction or raise train.num_steps')


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
  if t.decay_shape not in DECAY_SHAPES:
    _fail('train.decay_shape', t.decay_shape, f'unknown; expected one of {DECAY_SHAPES}')
  for s in t.save_steps:
    if not isinstance(s, int) or not 0 < s <= t.num_steps:
      _fail('train.save_steps', t.save_steps, f'every step must be an integer in [1, '
            f'train.num_steps={t.num_steps}]')
  _validate_init_from(t)
  if t.warmup_steps < 0:
    _fail('train.warmup_steps', t.warmup_steps, 'must be >= 0')
  if not isinstance(t.loss_chunk_len, int) or t.loss_chunk_len < 0:
    _fail('train.loss_chunk_len', t.loss_chunk_len, 'must be an integer >= 0 (0 turns chunking off)')
  mtp_weight = t.get('mtp_loss_weight', 1.0)
  if not isinstance(mtp_weight, (int, float)) or isinstance(mtp_weight, bool) or mtp_weight < 0:
    _fail('train.mtp_loss_weight', mtp_weight, 'must be a number >= 0')
  if m.get('mtp_heads', 0) and d.seq_len <= m.mtp_heads:
    _fail('model.mtp_heads', m.mtp_heads, f'leaves no target within data.seq_len={d.seq_len}')
  if t.learning_rate <= 0:
    _fail('train.learning_rate', t.learning_rate, 'must be positive')
  if t.batch_size % t.grad_accum_steps:
    _fail('train.batch_size', t.batch_size,
          f'must be divisible by train.grad_accum_steps={t.grad_accum_steps}')
  num_devices = num_devices or jax.device_count()
  ici, dcn = resolve_shape(config.mesh.ici, config.mesh.dcn, num_devices)
  sizes = {axis: i * d for axis, i, d in zip(MESH_AXES, ici, dcn)}
  rules = as_rules(config.mesh.rules)
  batch_axes = _mesh_axes(rules, 'batch')
  batch_shards = math.prod(sizes.get(a, 1) for a in batch_axes)
  micro = t.batch_size // t.grad_accum_steps
  if micro % batch_shards:
    _fail('train.batch_size', t.batch_size, f'each micro-batch ({micro} sequences) must divide '
          f'evenly over the {batch_shards} batch shards (mesh {" x ".join(batch_axes)})')
  check_pipeline(config, sizes['stage'], _mesh_axes(rules, 'layers'), batch_shards)
  if m.num_experts:
    expert_axes = _mesh_axes(rules, 'exp')
    expert_shards = math.prod(sizes.get(a, 1) for a in expert_axes)
    if m.num_experts % expert_shards:
      _fail('model.num_experts', m.num_experts, f'must divide evenly over the {expert_shards} '
            f'expert shards (mesh {" x ".join(expert_axes)})')
    token_shards = batch_shards * math.prod(sizes.get(a, 1) for a in expert_axes
                                            if a not in batch_axes)
    if micro % token_shards:
      _fail('train.batch_size', t.batch_size, f'each micro-batch ({micro} sequences) must divide '
            f'evenly over the {token_shards} devices that route tokens to experts')
  if t.batch_size % jax.process_count():
    _fail('train.batch_size', t.batch_size,
          f'must be divisible by the number of processes ({jax.process_count()})')
  if t.run_lock not in LOCK_KINDS:
    _fail('train.run_lock', t.run_lock, f'unknown; expected one of {LOCK_KINDS}')
  if not isinstance(d.unique_tokens, int) or d.unique_tokens < 0:
    _fail('data.unique_tokens', d.unique_tokens, 'must be an integer >= 0 (0: no limit)')
  trained = t.num_steps * t.batch_size * d.seq_len
  if d.unique_tokens and trained < d.unique_tokens:
    _fail('data.unique_tokens', d.unique_tokens,
          f'the run trains {trained:,} tokens, less than one epoch of its unique tokens; raise '
          'train.num_steps or lower data.unique_tokens (or 0 for no limit)')
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
  objectives.check_objective(t)
  if t.objective != 'causal':
    if m.attention_impl not in ('auto', 'xla', 'reference') or m.sliding_window:
      _fail('train.objective', t.objective, "a prefix or bidirectional mask needs "
            "model.attention_impl='xla' or 'reference' (or 'auto' on CPU) and no sliding window")
    if m.num_experts:
      _fail('train.objective', t.objective, 'is implemented for dense models only')
    if m.position == 'none':
      _fail('train.objective', t.objective, "attends both ways, so it cannot tell token order "
            "without positions; set model.position (now 'none')")
    if 'M' in mamba_field(m, 'block_pattern'):
      _fail('train.objective', t.objective, 'needs attention layers only: Mamba layers are '
            f"causal (model.block_pattern={mamba_field(m, 'block_pattern')!r})")
    if mtp_field(m, 'mtp_heads'):
      _fail('train.objective', t.objective, 'multi-token prediction heads predict the next '
            f"tokens of a causal model; set model.mtp_heads=0 (now {m.mtp_heads})")
  tokenizer_kinds.check_kind(d.tokenizer)
  if not d.tokenizer_path and m.vocab_size < tokenizer_kinds.minimum_vocab_size(d.tokenizer):
    _fail('model.vocab_size', m.vocab_size, f'too small for data.tokenizer={d.tokenizer!r}: it '
          f'needs at least {tokenizer_kinds.minimum_vocab_size(d.tokenizer)}')
  clean.check_config(d)
  mixture.parse(d.mixture, d.mixture_weight)
  if d.mixture and d.unique_tokens:
    _fail('data.mixture', d.mixture, 'cannot be combined with data.unique_tokens')
  if d.data_dir and not is_local(d.data_dir):
    _fail('data.data_dir', d.data_dir, 'must be a local directory (the token streams are '
          'memory-mapped); run directories may be in a bucket, the data cache may not')


def _mesh_axes(rules, logical: str) -> tuple:
  """The mesh axes a logical axis name maps to under `rules`."""
  spec = nn.logical_to_mesh_axes((logical,), rules)[0]
  return () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
