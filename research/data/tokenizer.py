"""Byte-level BPE tokenizers (Hugging Face `tokenizers`): train, save, load, and measure.

Byte-level BPE never meets an unknown symbol: any UTF-8 text round-trips exactly. Training is
deterministic for a fixed input, so every process of a run that trains one gets the same vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer
from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import trainers

from research.run_dir import as_path
from research.run_dir import write_atomically

PAD, BOS, EOS = '<|pad|>', '<|bos|>', '<|eos|>'
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2 in a tokenizer trained here
# End-of-document tokens of common tokenizers, tried in order when loading one made elsewhere.
EOS_CANDIDATES = (EOS, '<|endoftext|>', '</s>', '<eos>', '<|end_of_text|>')
BOS_CANDIDATES = (BOS, '<s>', '<bos>', '<|begin_of_text|>')
PAD_CANDIDATES = (PAD, '<pad>', '[PAD]')
_BYTE_PIECE = re.compile('<0x[0-9A-F]{2}>')  # a byte-fallback piece


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """Ids of the special tokens; `bos`/`pad` are None when a loaded tokenizer has none."""
  eos: int
  bos: int | None
  pad: int | None


def capped(texts: Iterable[str], max_chars: int) -> Iterator[str]:
  """The texts, in order, cut off once `max_chars` characters have been yielded."""
  left = max_chars
  for text in texts:
    if left <= 0:
      return
    yield text[:left]
    left -= len(text)


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_chars: int) -> Tokenizer:
  """Fits a byte-level BPE of at most `vocab_size` tokens (specials included) on `texts`.

  Only the first `max_chars` characters are used (`data.tokenizer_train_chars`). A small corpus
  may stop short of `vocab_size`; the ids then stay below it.
  """
  minimum = len(SPECIAL_TOKENS) + 256
  if vocab_size < minimum:
    raise ValueError(f'model.vocab_size={vocab_size} is too small for a byte-level BPE: it needs '
                     f'at least {minimum} (256 bytes + {len(SPECIAL_TOKENS)} special tokens).')
  if max_chars <= 0:
    raise ValueError(f'data.tokenizer_train_chars={max_chars} must be positive.')
  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tokenizer.train_from_iterator(capped(texts, max_chars), trainer=trainer)
  return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path) -> None:
  """Writes a `tokenizer.json` atomically (a reader never sees a partial file); `path` may be a
  URI (gs://bucket/run/tokenizer.json)."""
  as_path(path).parent.mkdir(parents=True, exist_ok=True)
  write_atomically(path, tokenizer.save)


def load_tokenizer(path) -> Tokenizer:
  """Reads a `tokenizer.json` written by this module or any Hugging Face `tokenizers` model."""
  path = os.fspath(path)
  if not as_path(path).is_file():
    raise FileNotFoundError(f'Tokenizer file {path!r} does not exist (data.tokenizer_path).')
  try:
    return Tokenizer.from_str(as_path(path).read_text())
  except Exception as e:  # the Rust side raises plain Exceptions
    raise ValueError(f'{path!r} is not a valid tokenizer.json: {e}') from e


def _first_id(tokenizer: Tokenizer, candidates: tuple[str, ...]) -> int | None:
  for token in candidates:
    token_id = tokenizer.token_to_id(token)
    if token_id is not None:
      return token_id
  return None


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
  """The EOS (required: it separates documents), BOS and PAD ids."""
  eos = _first_id(tokenizer, EOS_CANDIDATES)
  if eos is None:
    raise ValueError(f'The tokenizer has no end-of-document token; looked for {EOS_CANDIDATES}.')
  return SpecialIds(eos=eos, bos=_first_id(tokenizer, BOS_CANDIDATES),
                    pad=_first_id(tokenizer, PAD_CANDIDATES))


def text_encoder(tokenizer: Tokenizer) -> Tokenizer:
  """A copy that reads special-token strings in a document (`<|eos|>`) as plain text."""
  encoder = Tokenizer.from_str(tokenizer.to_str())
  encoder.encode_special_tokens = True
  return encoder


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
  """Token ids of each text, with no special tokens added or recognised."""
  encoder = text_encoder(tokenizer)
  return [e.ids for e in encoder.encode_batch_fast(texts, add_special_tokens=False)]


def fingerprint(tokenizer: Tokenizer) -> str:
  """A canonical JSON string of the tokenizer: equal strings encode text identically."""
  return json.dumps(json.loads(tokenizer.to_str()), sort_keys=True)


def _is_byte_level(tokenizer: Tokenizer) -> bool:
  decoder = json.loads(tokenizer.to_str()).get('decoder') or {}
  return decoder.get('type') == 'ByteLevel'


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
  """UTF-8 bytes of text each token id stands for; 0 for special tokens. Shape [vocab_size].

  Exact for byte-level tokenizers (each character of a token is one byte) and byte-fallback
  pieces (`<0xE2>`: one byte); for others it is the length of the token decoded alone (a leading
  SentencePiece `▁` counted as the space it stands for), which can miscount bytes of
  characters split across tokens and the spaces a WordPiece decoder puts between words.
  """
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  lengths_V = np.zeros(size, np.int64)
  byte_level = _is_byte_level(tokenizer)
  byte_fallback = bool(json.loads(tokenizer.to_str())['model'].get('byte_fallback'))
  specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
  for token, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
    if token in specials:
      continue
    if byte_level or (byte_fallback and _BYTE_PIECE.fullmatch(token)):
      lengths_V[token_id] = len(token) if byte_level else 1
      continue
    text = tokenizer.decode([token_id])
    lengths_V[token_id] = len(text.encode('utf-8')) + (
        token.startswith('\u2581') and not text.startswith(' '))
  return lengths_V


def bytes_per_token(tokenizer: Tokenizer, texts: Iterable[str]) -> float:
  """UTF-8 bytes of `texts` per token they encode to: how much text one token carries."""
  texts = list(texts)
  num_tokens = sum(len(ids) for ids in encode_texts(tokenizer, texts))
  if num_tokens == 0:
    raise ValueError('bytes_per_token: the texts encode to no tokens.')
  return sum(len(t.encode('utf-8')) for t in texts) / num_tokens
