"""A post-training run's configuration: the `posttrain` section, and the whole run config.

A post-training config has the sections `posttrain`, `train` (optimizer, schedule, loop; the
pretraining fields), `mesh` and `distributed`. Its `model` section is not written by hand: the run
resolves it from `posttrain.init_from` (grown by the chat tokens) and records it in config.json.
"""

from __future__ import annotations

import math

import jax
import ml_collections

from research.config import default_train_config
from research.parallel.distributed import default_distributed_config
from research.parallel.mesh import axis_size, default_mesh_config, full_shape, resolve_shape
from research.parallel.rules import DEFAULT_RULES
from research.posttrain.losses import KL_ESTIMATORS
from research.posttrain.tasks import TASKS
from research.train.schedules import SCHEDULES

STAGES = ('sft', 'reward', 'dpo', 'ppo', 'grpo')
POLICY_STAGES = ('sft', 'dpo', 'ppo', 'grpo')  # stages whose run holds a policy
RL_STAGES = ('ppo', 'grpo')  # stages that sample rollouts
REFERENCE_STAGES = ('dpo', 'ppo', 'grpo')  # stages with a frozen reference model
REWARDS = ('verifier', 'model')
RECORD_KIND = {'sft': 'sft', 'reward': 'preference', 'dpo': 'preference', 'ppo': 'prompt',
               'grpo': 'prompt'}


def default_posttrain_config() -> ml_collections.ConfigDict:
  """Defaults of the `posttrain` section; configs/posttrain/<stage>.py override them."""
  c = ml_collections.ConfigDict()
  c.stage = 'sft'  # sft | reward | dpo | ppo | grpo
  c.init_from = ''  # a run directory (pretraining or post-training) or a Hugging Face directory
  c.reference = ''  # dpo/ppo/grpo: the frozen reference run (the SFT run); '' = init_from
  c.reward = 'verifier'  # ppo/grpo: 'verifier' (posttrain.task) or 'model' (posttrain.reward_from)
  c.reward_from = ''  # reward='model': the reward-model run directory
  c.task = ''  # addition | sorting: the verifier (gold reward, accuracy); '' = none
  c.train_file = ''  # JSONL records: sft {prompt, response}; reward/dpo {prompt, chosen,
  #                    rejected}; ppo/grpo {prompt}
  c.eval_file = ''  # held-out records of the same kind; '' = no evaluation (every
  #                   train.eval_every steps, at step 0 and at the end)
  c.eval_prompts = 128  # evaluation records used (the first ones of eval_file)
  c.seq_len = 64  # tokens per row: prompt + response (ppo/grpo: prompt + max_new_tokens)
  c.pack = True  # sft: several whole examples per row
  c.beta = 0.1  # dpo: the beta of the loss; ppo/grpo: the KL coefficient (0: no KL term)
  c.label_smoothing = 0.0  # dpo: eps, the assumed share of flipped preference labels
  c.kl_estimator = 'k1'  # ppo/grpo: k1 = log pi - log ref | k3 = exp(ref - pi) - (ref - pi) - 1
  c.max_new_tokens = 8  # ppo/grpo: response tokens sampled per prompt (and in evaluation)
  c.group_size = 4  # grpo: samples per prompt
  c.ppo_epochs = 2  # ppo/grpo: passes over each batch of rollouts
  c.num_minibatches = 2  # ppo/grpo: optimizer updates per pass
  c.clip_eps = 0.2  # ppo/grpo: the ratio's clip range
  c.value_clip = 0.2  # ppo: values stay this close to the rollout's (0: no value clipping)
  c.vf_coef = 0.5  # ppo: weight of the value loss
  c.gamma = 1.0  # ppo: GAE discount
  c.lam = 0.95  # ppo: GAE lambda
  c.whiten_advantages = True  # ppo: advantages to mean 0, variance 1 over each batch
  return c


def posttrain_base_config(stage: str) -> ml_collections.ConfigDict:
  """Every section's defaults for `stage`; a small constant learning rate, as fine-tuning uses."""
  c = ml_collections.ConfigDict()
  c.posttrain = default_posttrain_config()
  c.posttrain.stage = stage
  c.train = default_train_config()
  c.train.update(batch_size=32, num_steps=200, learning_rate=1e-4, schedule='constant',
                 warmup_steps=10, weight_decay=0.0, log_every=1, eval_every=50,
                 checkpoint_every=50, keep_checkpoints=2)
  c.mesh = default_mesh_config()
  c.mesh.rules = DEFAULT_RULES
  c.distributed = default_distributed_config()
  return c


def _fail(field: str, value, why: str):
  raise ValueError(f'{field}={value!r}: {why}')


def validate_posttrain_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field of any impossible setting; reads no file."""
  for section in ('posttrain', 'train', 'mesh'):
    if section not in config:
      _fail(section, None, 'missing section; start from posttrain_base_config(stage)')
  p, t = config.posttrain, config.train
  if p.stage not in STAGES:
    _fail('posttrain.stage', p.stage, f'unknown; expected one of {STAGES}')
  if not p.init_from:
    _fail('posttrain.init_from', p.init_from, 'required: a run or Hugging Face directory')
  if not p.train_file:
    _fail('posttrain.train_file', p.train_file, 'required: a JSONL file of records')
  if p.task and p.task not in TASKS:
    _fail('posttrain.task', p.task, f'unknown; expected one of {tuple(TASKS)}')
  if p.stage in RL_STAGES:
    if p.reward not in REWARDS:
      _fail('posttrain.reward', p.reward, f'unknown; expected one of {REWARDS}')
    if p.reward == 'verifier' and not p.task:
      _fail('posttrain.task', p.task, "required when posttrain.reward='verifier'")
    if p.reward == 'model' and not p.reward_from:
      _fail('posttrain.reward_from', p.reward_from, "required when posttrain.reward='model'")
    if p.kl_estimator not in KL_ESTIMATORS:
      _fail('posttrain.kl_estimator', p.kl_estimator, f'unknown; expected one of {KL_ESTIMATORS}')
    for field in ('max_new_tokens', 'ppo_epochs', 'num_minibatches'):
      if not isinstance(p[field], int) or p[field] <= 0:
        _fail(f'posttrain.{field}', p[field], 'must be a positive integer')
    if p.max_new_tokens >= p.seq_len:
      _fail('posttrain.max_new_tokens', p.max_new_tokens,
            f'must leave room for the prompt in posttrain.seq_len={p.seq_len}')
    if p.stage == 'grpo' and (not isinstance(p.group_size, int) or p.group_size < 2):
      _fail('posttrain.group_size', p.group_size, 'must be an integer >= 2 (a group needs a '
            'standard deviation)')
    rows = t.batch_size * (p.group_size if p.stage == 'grpo' else 1)
    if rows % p.num_minibatches:
      _fail('posttrain.num_minibatches', p.num_minibatches,
            f'must divide the {rows} rollouts of a step (train.batch_size'
            f'{" x posttrain.group_size" if p.stage == "grpo" else ""})')
    if p.clip_eps <= 0:
      _fail('posttrain.clip_eps', p.clip_eps, 'must be positive')
    if p.value_clip < 0:
      _fail('posttrain.value_clip', p.value_clip, 'must be >= 0 (0 turns value clipping off)')
    if p.vf_coef < 0:
      _fail('posttrain.vf_coef', p.vf_coef, 'must be >= 0')
    if not 0 <= p.gamma <= 1:
      _fail('posttrain.gamma', p.gamma, 'must be in [0, 1]')
    if not 0 <= p.lam <= 1:
      _fail('posttrain.lam', p.lam, 'must be in [0, 1]')
  if p.beta < 0 or (p.stage == 'dpo' and p.beta == 0):
    _fail('posttrain.beta', p.beta, 'must be positive for dpo and >= 0 for ppo/grpo')
  if not 0 <= p.label_smoothing < 0.5:
    _fail('posttrain.label_smoothing', p.label_smoothing, 'must be in [0, 0.5)')
  for field in ('seq_len', 'eval_prompts'):
    if not isinstance(p[field], int) or p[field] <= 0:
      _fail(f'posttrain.{field}', p[field], 'must be a positive integer')
  for field in ('batch_size', 'num_steps', 'log_every', 'eval_every', 'checkpoint_every',
                'keep_checkpoints'):
    if not isinstance(t[field], int) or t[field] <= 0:
      _fail(f'train.{field}', t[field], 'must be a positive integer')
  if t.schedule not in SCHEDULES:
    _fail('train.schedule', t.schedule, f'unknown; expected one of {SCHEDULES}')
  if t.learning_rate <= 0:
    _fail('train.learning_rate', t.learning_rate, 'must be positive')
  if t.warmup_steps < 0:
    _fail('train.warmup_steps', t.warmup_steps, 'must be >= 0')
  if t.grad_accum_steps != 1:
    _fail('train.grad_accum_steps', t.grad_accum_steps, 'post-training steps take whole batches')
  if jax.process_count() != 1:
    _fail('distributed', jax.process_count(), 'post-training runs in one process (on all of its '
          'devices)')
  _check_no_stages(config.mesh)
  ici, dcn = resolve_shape(config.mesh.ici, config.mesh.dcn, jax.device_count())
  _check_no_stages(config.mesh, ici, dcn)
  batch_shards = math.prod(axis_size(shape, axis) for shape in (ici, dcn)
                           for axis in ('data', 'fsdp'))
  if t.batch_size % batch_shards:
    _fail('train.batch_size', t.batch_size,
          f'must divide evenly over the {batch_shards} batch shards (mesh data x fsdp)')


def _check_no_stages(mesh_config, ici=None, dcn=None) -> None:
  """Post-training steps run the layers unpipelined (and decode rollouts), so a mesh 'stage'
  axis above 1 would only spread the layers' params: refused, naming the field. Checked on the
  shapes as written (before the device count is known) and, for a -1, once resolved."""
  for name, shape in (('mesh.ici', ici or mesh_config.ici), ('mesh.dcn', dcn or mesh_config.dcn)):
    if axis_size(full_shape(name, shape), 'stage') > 1:
      _fail(name, tuple(mesh_config[name.split('.')[1]]), "post-training has no pipeline "
            "stages: set the 'stage' entry (the second of five) to 1")


def validate_against_model(config: ml_collections.ConfigDict) -> None:
  """Checks that need the resolved `model` section."""
  p, m = config.posttrain, config.model
  if p.seq_len > m.max_seq_len:
    _fail('posttrain.seq_len', p.seq_len,
          f'exceeds the model context model.max_seq_len={m.max_seq_len} of posttrain.init_from')
