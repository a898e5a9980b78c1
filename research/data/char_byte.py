"""Control tokenizers with no learned merges: one token per character, or one per UTF-8 byte.

Both keep any text exactly. The character tokenizer holds the most frequent characters of the
train text that fit in the vocabulary; any other character is spelled in byte-fallback tokens
`<0x00>`..`<0xFF>`. The byte tokenizer is byte-level BPE without merges.
"""

from __future__ import annotations

import collections
from typing import Iterable

from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import Tokenizer

BYTE_PIECES = tuple(f'<0x{b:02X}>' for b in range(256))


def minimum_vocab_size(special_tokens: tuple[str, ...]) -> int:
  """The specials and the 256 bytes (both kinds need them)."""
  return len(special_tokens) + 256


def train_char(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...]) -> Tokenizer:
  """Ids: the specials, the 256 byte pieces, then characters from most to least frequent (ties
  in code-point order) while the vocabulary has room."""
  counts = collections.Counter()
  for text in texts:
    counts.update(text)
  room = vocab_size - len(special_tokens) - len(BYTE_PIECES)
  chars = sorted(counts, key=lambda c: (-counts[c], c))[:max(room, 0)]
  pieces = [*special_tokens, *BYTE_PIECES, *chars]
  tokenizer = Tokenizer(models.BPE({p: i for i, p in enumerate(pieces)}, [], byte_fallback=True))
  tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
  tokenizer.add_special_tokens(list(special_tokens))
  return tokenizer


def train_byte(special_tokens: tuple[str, ...]) -> Tokenizer:
  """Ids: the specials, then the 256 bytes in byte order (byte b is id len(specials) + b)."""
  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(),
                    key=lambda c: _BYTE_OF_CHAR[c])
  pieces = [*special_tokens, *alphabet]
  tokenizer = Tokenizer(models.BPE({p: i for i, p in enumerate(pieces)}, []))
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.add_special_tokens(list(special_tokens))
  return tokenizer


def _byte_of_char() -> dict[str, int]:
  """GPT-2's byte -> printable character table, inverted (the ByteLevel alphabet's order)."""
  printable = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1),
               *range(ord('®'), ord('ÿ') + 1)]
  chars, extra = {}, 0
  for b in range(256):
    if b in printable:
      chars[chr(b)] = b
    else:
      chars[chr(256 + extra)] = b
      extra += 1
  return chars


_BYTE_OF_CHAR = _byte_of_char()
