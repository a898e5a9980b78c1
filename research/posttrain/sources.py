"""The models a post-training run starts from and compares against, read from their directories.

`posttrain.init_from`, `posttrain.reference` and `posttrain.reward_from` each name a finished run
directory (pretraining or post-training) or a Hugging Face directory (config.json,
model.safetensors and the `tokenizers` file). Whatever is wrong with one is a ValueError naming
the field and the directory.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research import hf
from research import run_dir
from research.data import tokenizer as tokenizer_lib
from research.posttrain import chat
from research.posttrain.vocab import grow_vocab
from research.train.checkpoint import load_state


@dataclasses.dataclass
class Source:
  """A model read from a directory: its config, params (numpy), tokenizer and what made it."""
  path: str
  kind: str  # 'pretrain', a post-training stage, or 'hf'
  model_config: ml_collections.ConfigDict
  params: dict
  tokenizer: Tokenizer
  identity: dict  # what config.json records of it: the run's config hash and checkpoint step


def _is_hf(path: str) -> bool:
  return any(os.path.isfile(os.path.join(path, name))
             for name in (hf.WEIGHTS_FILE, hf.WEIGHTS_INDEX_FILE))


def _tokenizer(path: str, field: str) -> Tokenizer:
  try:
    tokenizer = tokenizer_lib.load_tokenizer(os.path.join(path, run_dir.TOKENIZER_FILE))
    tokenizer_lib.special_ids(tokenizer)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f'{field}={path!r}: {e}') from None
  return tokenizer


def _read_hf(path: str, field: str) -> Source:
  try:
    model_config, params = hf.from_pretrained(path)
  except ValueError as e:
    raise ValueError(f'{field}={path!r}: {e}') from None
  return Source(path, 'hf', model_config, jax.tree.map(np.asarray, params),
                _tokenizer(path, field), {'path': path, 'kind': 'hf'})


def _read_run(path: str, field: str) -> Source:
  config = run_dir.read_config(path)
  if config is None or 'model' not in config:
    raise ValueError(f'{field}={path!r}: not a run directory (no {run_dir.CONFIG_FILE} with a '
                     f'model section) nor a Hugging Face directory ({hf.WEIGHTS_FILE})')
  summary = run_dir.read_summary(path)
  if summary is None or summary.get('status') != 'completed':
    state = 'has not finished' if summary is None else f'ended {summary.get("status")!r}'
    raise ValueError(f'{field}={path!r}: the run {state}; post-train from a completed run')
  step, state = load_state(path)
  kind = config.get('posttrain', {}).get('stage', 'pretrain')
  return Source(path, kind, ml_collections.ConfigDict(config['model']), state['params'],
                _tokenizer(path, field),
                {'path': path, 'kind': kind, 'config_hash': summary.get('config_hash'),
                 'step': int(step)})


def read_source(path: str, field: str) -> Source:
  """The run or Hugging Face model at `path` (the value of config field `field`)."""
  if not os.path.isdir(path):
    raise ValueError(f'{field}={path!r}: no such directory')
  return _read_hf(path, field) if _is_hf(path) else _read_run(path, field)


def as_policy(source: Source, field: str) -> Source:
  """The source as a language model (a PPO run's policy), its tokenizer with the chat tokens and
  its vocabulary grown to hold them."""
  if source.kind == 'reward':
    raise ValueError(f'{field}={source.path!r}: a reward-model run, not a language model')
  params = source.params['policy'] if source.kind == 'ppo' else source.params
  return _with_chat_tokens(dataclasses.replace(source, params=params))


def as_reward_model(source: Source, field: str) -> Source:
  """The source as a reward model ({'backbone', 'head'} params); it must be a reward run."""
  if source.kind != 'reward':
    raise ValueError(f'{field}={source.path!r}: a {source.kind!r} run, not a reward-model run '
                     "(posttrain.stage='reward')")
  return _with_chat_tokens(source)


def _with_chat_tokens(source: Source) -> Source:
  tokenizer = chat.with_chat_tokens(source.tokenizer)
  params = source.params
  if source.kind == 'reward':
    model_config, backbone = grow_vocab(source.model_config, params['backbone'],
                                        chat.vocab_size(tokenizer))
    params = dict(params, backbone=backbone)
  else:
    model_config, params = grow_vocab(source.model_config, params, chat.vocab_size(tokenizer))
  return dataclasses.replace(source, model_config=model_config, params=params,
                             tokenizer=tokenizer)


def check_compatible(source: Source, field: str, policy: Source, policy_field: str,
                     same_model: bool) -> None:
  """ValueError naming `field` unless `source` has the policy's tokenizer (and, if `same_model`,
  its model config): a reference must score the policy's tokens with the policy's shapes."""
  if tokenizer_lib.fingerprint(source.tokenizer) != tokenizer_lib.fingerprint(policy.tokenizer):
    raise ValueError(f'{field}={source.path!r}: its tokenizer differs from that of '
                     f'{policy_field}={policy.path!r}; both must encode text identically')
  if same_model:
    ours, theirs = policy.model_config.to_dict(), source.model_config.to_dict()
    diff = [f'model.{k}: {ours.get(k)!r} in {policy_field}, {theirs.get(k)!r} in {field}'
            for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    if diff:
      raise ValueError(f'{field}={source.path!r}: its model differs from that of '
                       f'{policy_field}={policy.path!r}: ' + '; '.join(diff))
