"""Bits per byte and perplexity of a model on any text: the run's own validation split, or text
it never saw, by default the source code of the running interpreter's standard library (every
machine has it, so out-of-domain needs no download).

Bits per byte = total nats of every target token / ln 2 / UTF-8 bytes those tokens stand for: unlike
perplexity per token it does not depend on the tokenizer, so runs with different tokenizers compare.
The text is windowed as training evaluates it (`research.data.pipeline.eval_batches`: documents
joined with EOS, windows of seq_len + 1 tokens spread evenly over the stream).
"""

from __future__ import annotations

import math
import os
import sysconfig
from typing import Iterable

import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research.data import pipeline
from research.data import tokenizer as tokenizer_lib
from research.evals.scoring import score_tokens


def stdlib_texts(max_files: int = 0, root: str | None = None) -> list[str]:
  """The interpreter's standard-library modules (`*.py` directly in the stdlib directory, sorted
  by name), as text; `max_files` > 0 keeps the first that many."""
  root = root or sysconfig.get_paths()['stdlib']
  names = sorted(n for n in os.listdir(root) if n.endswith('.py'))
  if max_files > 0:
    names = names[:max_files]
  if not names:
    raise ValueError(f'{root}: no .py files (the standard library directory)')
  texts = []
  for name in names:
    with open(os.path.join(root, name), encoding='utf-8', errors='replace') as f:
      texts.append(f.read())
  return texts


def bits_per_byte(model_config: ml_collections.ConfigDict, params, tokenizer: Tokenizer,
                  texts: Iterable[str], seq_len: int, batch_size: int = 8,
                  num_batches: int = 16) -> dict:
  """-> {'bits_per_byte', 'nats_per_token', 'perplexity', 'tokens', 'bytes', 'windows'} of the
  model on `texts`, over `num_batches` x `batch_size` windows of `seq_len` targets spread evenly
  over the tokenized text (fewer if the text is short). ValueError if it fills no batch."""
  if not 0 < seq_len <= model_config.max_seq_len:
    raise ValueError(f'seq_len={seq_len}: must lie in [1, model.max_seq_len='
                     f'{model_config.max_seq_len}]')
  eos = tokenizer_lib.special_ids(tokenizer).eos
  stream_T = pipeline.tokenize_documents(tokenizer, texts, eos)
  eval_set = pipeline.eval_batches(stream_T, seq_len, batch_size, num_batches,
                                   tokenizer_lib.token_byte_lengths(tokenizer))
  return bits_per_byte_of(model_config, params, eval_set)


def bits_per_byte_of(model_config: ml_collections.ConfigDict, params,
                     eval_set: pipeline.EvalSet) -> dict:
  """The same numbers for an already windowed `EvalSet` (e.g. the one a run evaluates on)."""
  windows = [np.concatenate([b['inputs'][i], b['targets'][i, -1:]])
             for b in eval_set.batches for i in range(len(b['inputs']))]
  seq_len = eval_set.batches[0]['inputs'].shape[1]
  scored = score_tokens(model_config, params, windows, [seq_len] * len(windows),
                        batch_size=len(eval_set.batches[0]['inputs']))
  nats = -float(scored.logprob.sum())
  return {'bits_per_byte': nats / math.log(2) / eval_set.num_bytes,
          'nats_per_token': nats / eval_set.num_tokens,
          'perplexity': math.exp(nats / eval_set.num_tokens),
          'tokens': eval_set.num_tokens, 'bytes': eval_set.num_bytes, 'windows': len(windows)}
