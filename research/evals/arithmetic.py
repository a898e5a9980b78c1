"""Addition with a verifier, for emergence: `37+48=85`, one problem per line.

The answer is checked exactly (every digit and the line end greedy-correct: what greedy decoding
would write) and, as the continuous metric Schaeffer et al. (2023) contrast with it, by the mean
per-token log-probability of the true answer.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research.evals.scoring import score_texts


def problem(rng: np.random.Generator, digits: int) -> tuple[str, str]:
  """(prompt 'a+b=', answer 'c' + newline) with a and b of at most `digits` digits."""
  a, b = rng.integers(0, 10 ** digits, 2)
  return f'{a}+{b}=', f'{a + b}\n'


def documents(num_documents: int, problems_per_document: int, digits: int,
              seed: int = 0) -> list[str]:
  """Training text: documents of problems with their answers."""
  rng = np.random.default_rng(seed)
  return [''.join(''.join(problem(rng, digits)) for _ in range(problems_per_document))
          for _ in range(num_documents)]


def addition(model_config: ml_collections.ConfigDict, params, tokenizer: Tokenizer, digits: int,
             num_problems: int = 256, seed: int = 1, batch_size: int = 32) -> dict:
  """-> {'exact_match', 'token_logprob' (mean nats per answer token), 'token_probability'
  (its exp: the geometric-mean probability of an answer token), 'answer_tokens'} on fresh
  problems. A problem counts as solved only if the whole answer and the line end are right."""
  rng = np.random.default_rng(seed)
  prompts, answers = zip(*(problem(rng, digits) for _ in range(num_problems)))
  prompts = ['\n' + p for p in prompts]  # a problem starts a line, as in training
  scored = score_texts(model_config, params, tokenizer, prompts, answers, batch_size)
  token_logprob = float(scored.logprob.sum() / scored.count.sum())
  return {'exact_match': float(scored.greedy.mean()), 'token_logprob': token_logprob,
          'token_probability': float(np.exp(token_logprob)),
          'answer_tokens': float(scored.count.mean())}
