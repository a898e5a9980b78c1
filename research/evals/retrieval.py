"""Lost in the middle (Liu et al. 2023), synthetic: retrieve the value of one key from a context
of key=value pairs, with the queried pair placed at every depth of the context.

A record reads `a=7 c=2 x=9 ... ? c=2 x=9` : `num_pairs` pairs (distinct one-letter keys, digit
values), then queries, each a key whose value the model must copy from the context. Training text
is many such records; the probe asks one query per prompt and scores the value (greedy exact match
and its log-probability) for the queried pair at depth 0 (first pair) .. num_pairs - 1 (last).
"""

from __future__ import annotations

import string

import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research.evals.scoring import score_texts

KEYS = string.ascii_lowercase
VALUES = string.digits


def _pairs(rng: np.random.Generator, num_pairs: int) -> list[tuple[str, str]]:
  if not 1 <= num_pairs <= len(KEYS):
    raise ValueError(f'num_pairs={num_pairs}: must lie in [1, {len(KEYS)}] (one-letter keys)')
  keys = rng.choice(list(KEYS), num_pairs, replace=False)
  return [(k, str(rng.choice(list(VALUES)))) for k in keys]


def _context(pairs) -> str:
  return ' '.join(f'{k}={v}' for k, v in pairs) + ' ?'


def record(rng: np.random.Generator, num_pairs: int, num_queries: int) -> str:
  """One training record: the pairs, then `num_queries` of them (random order) answered."""
  pairs = _pairs(rng, num_pairs)
  asked = rng.choice(num_pairs, min(num_queries, num_pairs), replace=False)
  return _context(pairs) + ''.join(f' {pairs[i][0]}={pairs[i][1]}' for i in asked)


def documents(num_documents: int, records_per_document: int, num_pairs: int, num_queries: int,
              seed: int = 0) -> list[str]:
  """Training text: documents of records, one per line."""
  rng = np.random.default_rng(seed)
  return ['\n'.join(record(rng, num_pairs, num_queries) for _ in range(records_per_document))
          for _ in range(num_documents)]


def prompt(rng: np.random.Generator, num_pairs: int, depth: int) -> tuple[str, str]:
  """(context ending in '? k=', answer value) asking for the pair at `depth`."""
  if not 0 <= depth < num_pairs:
    raise ValueError(f'depth={depth}: must lie in [0, num_pairs={num_pairs})')
  pairs = _pairs(rng, num_pairs)
  key, value = pairs[depth]
  return f'{_context(pairs)} {key}=', value


def lost_in_the_middle(model_config: ml_collections.ConfigDict, params, tokenizer: Tokenizer,
                       num_pairs: int, prompts_per_depth: int = 64, seed: int = 0,
                       batch_size: int = 32) -> dict:
  """-> {'depth': [P], 'accuracy': [P] (greedy answer exact), 'logprob': [P] (mean log p of the
  answer, nats), 'prompts_per_depth'} for the queried pair at each depth 0..num_pairs - 1."""
  rng = np.random.default_rng(seed)
  depths = np.repeat(np.arange(num_pairs), prompts_per_depth)
  contexts, answers = zip(*(prompt(rng, num_pairs, int(d)) for d in depths))
  contexts = ['\n' + c for c in contexts]  # a record starts a line, as in training
  scored = score_texts(model_config, params, tokenizer, contexts, answers, batch_size)
  per_token = scored.logprob / scored.count
  return {'depth': np.arange(num_pairs),
          'accuracy': np.array([scored.greedy[depths == d].mean() for d in range(num_pairs)]),
          'logprob': np.array([per_token[depths == d].mean() for d in range(num_pairs)]),
          'prompts_per_depth': prompts_per_depth}
