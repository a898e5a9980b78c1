"""What each stage adds to the common loop (`run.py`): its rows, its compiled step and its
evaluation. `make_stage(context)` picks the stage of `config.posttrain.stage`.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from research.posttrain import packing
from research.posttrain import rollouts
from research.posttrain import steps
from research.posttrain.chat import ChatTemplate
from research.posttrain.evaluation import evaluate_policy, reward_model_scores
from research.posttrain.records import Record


@dataclasses.dataclass
class Context:
  """Everything a stage needs, resolved and loaded by the run."""
  config: ml_collections.ConfigDict  # resolved: has the model section
  template: ChatTemplate
  mesh: object
  rules: tuple
  shardings: object  # TrainState of NamedShardings
  optimizer: object
  task: object | None  # the verifier's task
  reference_params: dict | None  # on device, sharded like the policy
  reward_model: tuple | None  # (model config, params on device)
  eval_records: list[Record]


def shard_rows(batch: dict, mesh, rules) -> dict:
  """Host arrays [B, ...] -> device arrays split along the batch over the data-parallel axes."""
  def put(x):
    x = np.asarray(x)
    spec = nn.logical_to_mesh_axes(('batch',) + (None,) * (x.ndim - 1), rules)
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(*spec)))
  return {k: put(v) for k, v in batch.items()}


class Stage:
  """The common part: the jitted step over sharded batches, and evaluation on held-out prompts."""
  response_field = None  # the record field that holds the response to evaluate prompts with

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.m, self.p = ctx.config.model, ctx.config.posttrain
    self.eval_prompts = ctx.eval_records[:self.p.eval_prompts]

  def shard(self, batch: dict) -> dict:
    return shard_rows(batch, self.ctx.mesh, self.ctx.rules)

  def jit_step(self, step_fn):
    """`step_fn(state, batch, *rest)` jitted with the state's shardings; the state is donated."""
    return jax.jit(step_fn, out_shardings=(self.ctx.shardings, None), donate_argnums=0)

  def policy(self, params):
    return params

  def policy_metrics(self, params) -> dict:
    """Verifier accuracy, KL to the reference and proxy score on the evaluation prompts."""
    if not self.eval_prompts:
      return {}
    prompt_len = self.p.seq_len - self.p.max_new_tokens
    rows = packing.prompt_rows(self.ctx.template, self.eval_prompts, prompt_len)
    return evaluate_policy(self.m, self.policy(params), self.ctx.template, rows,
                           [r['prompt'] for r in self.eval_prompts], self.p.max_new_tokens,
                           self.ctx.task, self.ctx.reference_params, self.ctx.reward_model)


class SFT(Stage):
  def rows(self, records):
    return packing.sft_rows(self.ctx.template, records, self.p.seq_len, self.p.pack)

  def __init__(self, ctx):
    super().__init__(ctx)
    self._step = self.jit_step(steps.make_sft_step(self.m, ctx.optimizer))
    self._eval_loss = jax.jit(functools.partial(steps.sft_eval_loss, self.m))

  def step(self, state, batch, step):
    return self._step(state, self.shard(batch))

  def evaluate(self, state):
    if not self.eval_prompts:
      return {}
    rows = packing.sft_rows(self.ctx.template, self.eval_prompts, self.p.seq_len, pack=False)
    loss = float(self._eval_loss(state.params, rows))
    return {'eval_loss': loss, **self.policy_metrics(state.params)}


class Reward(Stage):
  def rows(self, records):
    return packing.preference_rows(self.ctx.template, records, self.p.seq_len)

  def __init__(self, ctx):
    super().__init__(ctx)
    self._step = self.jit_step(steps.make_reward_step(self.m, ctx.optimizer))
    self._metrics = jax.jit(functools.partial(steps.reward_pair_metrics, self.m))

  def step(self, state, batch, step):
    return self._step(state, self.shard(batch))

  def evaluate(self, state):
    if not self.eval_prompts:
      return {}
    metrics = self._metrics(state.params, self.rows(self.eval_prompts))
    return {f'eval_{k}': float(v) for k, v in metrics.items()}


class DPO(Stage):
  def rows(self, records):
    return packing.preference_rows(self.ctx.template, records, self.p.seq_len)

  def __init__(self, ctx):
    super().__init__(ctx)
    p = self.p
    self._step = self.jit_step(steps.make_dpo_step(self.m, ctx.optimizer, p.beta,
                                                   p.label_smoothing))
    self._metrics = jax.jit(functools.partial(steps.dpo_pair_metrics, self.m, beta=p.beta,
                                              label_smoothing=p.label_smoothing))

  def step(self, state, batch, step):
    return self._step(state, self.shard(batch), self.ctx.reference_params)

  def evaluate(self, state):
    if not self.eval_prompts:
      return {}
    metrics = self._metrics(state.params, self.ctx.reference_params,
                            self.rows(self.eval_prompts))
    out = {f'eval_pair_{k}': float(v) for k, v in metrics.items()}
    return {**out, **self.policy_metrics(state.params)}


class RL(Stage):
  """PPO and GRPO: sample rollouts, score them, prepare advantages, update for a few epochs."""

  def rows(self, records):
    rows = packing.prompt_rows(self.ctx.template, records, self.p.seq_len - self.p.max_new_tokens)
    return {**rows, 'index': np.arange(len(records), dtype=np.int32)}

  def __init__(self, ctx, records: list[Record]):
    super().__init__(ctx)
    self.records = records
    p, m = self.p, self.m
    self.repeat = p.group_size if p.stage == 'grpo' else 1
    prepare = steps.prepare_ppo if p.stage == 'ppo' else steps.prepare_grpo
    self._prepare = jax.jit(functools.partial(prepare, m, p))
    self._update = self.jit_step(steps.make_rl_update(m, p, ctx.optimizer))

  def policy(self, params):
    return params['policy'] if self.p.stage == 'ppo' else params

  def scores(self, rollout) -> dict:
    """'score' (the reward trained on) and, when known, 'gold' (verifier) and 'proxy' (model)."""
    out = {}
    if self.ctx.task is not None:
      out['gold'] = rollouts.verifier_scores(self.ctx.task, rollout)
    if self.ctx.reward_model is not None:
      out['proxy'] = reward_model_scores(*self.ctx.reward_model, rollout)
    out['score'] = out['gold'] if self.p.reward == 'verifier' else out['proxy']
    return out

  def step(self, state, batch, step):
    t = self.ctx.config.train
    start = time.perf_counter()
    rows = len(batch['index']) * self.repeat
    seed = (t.seed * 1_000_003 + step * rows) % 2**31
    rollout = rollouts.sample(self.m, self.policy(state.params), self.ctx.template,
                              batch['prompt'], batch['length'],
                              [self.records[i]['prompt'] for i in batch['index']],
                              self.p.max_new_tokens, seed, temperature=1.0, repeat=self.repeat)
    scores = self.scores(rollout)
    rollout_s = time.perf_counter() - start
    shard = self.shard({'tokens': rollout.tokens, 'mask': rollout.mask,
                        'scores': scores['score']})
    prepared, metrics = self._prepare(state.params, self.ctx.reference_params, shard['tokens'],
                                      shard['mask'], shard['scores'])
    key = jax.random.fold_in(jax.random.key(t.seed), step)
    state, update_metrics = self._update(state, prepared, key)
    extra = {f'{k}_score': float(v.mean()) for k, v in scores.items() if k != 'score'}
    return state, {**metrics, **update_metrics, **extra, 'rollout_time_s': rollout_s}

  def evaluate(self, state):
    return self.policy_metrics(state.params)


def make_stage(ctx: Context, train_records: list[Record]) -> Stage:
  stage = ctx.config.posttrain.stage
  if stage in ('ppo', 'grpo'):
    return RL(ctx, train_records)
  return {'sft': SFT, 'reward': Reward, 'dpo': DPO}[stage](ctx)
