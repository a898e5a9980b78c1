"""How a tokenizer does on held-out text: bytes per token, vocabulary use, round-trip exactness."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from research.data import tokenizer as tokenizer_lib


def measure(tokenizer: Tokenizer, texts: Sequence[str]) -> dict:
  """{bytes_per_token, tokens, vocab_size, vocab_used (share of ids seen at least once),
  exact_documents (share that decode back to the same text), first_mismatch (its index, or
  None)} over `texts`."""
  texts = list(texts)
  encoded = tokenizer_lib.encode_texts(tokenizer, texts)
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  seen_V = np.zeros(size, bool)
  exact, first_mismatch = 0, None
  decoded = tokenizer.decode_batch(encoded, skip_special_tokens=False)
  for i, (text, ids, back) in enumerate(zip(texts, encoded, decoded)):
    seen_V[np.asarray(ids, np.int64)] = True
    if back == text:
      exact += 1
    elif first_mismatch is None:
      first_mismatch = i
  tokens = sum(len(ids) for ids in encoded)
  num_bytes = sum(len(t.encode('utf-8')) for t in texts)
  return {'bytes_per_token': num_bytes / max(tokens, 1), 'tokens': tokens, 'bytes': num_bytes,
          'vocab_size': size, 'vocab_used': float(seen_V.mean()),
          'exact_documents': exact / max(len(texts), 1), 'first_mismatch': first_mismatch}
