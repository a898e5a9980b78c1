"""Every tokenizer kind a run can train (`data.tokenizer`), and loading any tokenizer file.

Each kind is trained on the first `data.tokenizer_train_chars` characters of the train split and
becomes a Hugging Face `tokenizers.Tokenizer` (saved as the run's tokenizer.json); SentencePiece
kinds also keep their `.model`. Ids 0, 1, 2 are always pad, bos and eos.
"""

from __future__ import annotations

import dataclasses
import os

from tokenizers import Tokenizer

from research.data import char_byte
from research.data import sentencepiece_tokenizer
from research.data import tokenizer as tokenizer_lib
from research.data import wordpiece
from research.run_dir import as_path

KINDS = ('bpe', 'sentencepiece_unigram', 'sentencepiece_bpe', 'wordpiece', 'char', 'byte')
# Where decoding does not give back the text exactly.
INEXACT = {
    'wordpiece': 'whitespace between words becomes one space; unseen characters [UNK]',
    # tokenizers' Unigram model cannot keep a piece out of its lattice, as SentencePiece does.
    'sentencepiece_unigram': "text spelling a control or byte piece ('<unk>', '<0x41>') "
                             'encodes as that piece',
}
SENTENCEPIECE_SUFFIX = '.model'


@dataclasses.dataclass(frozen=True)
class Trained:
  """A tokenizer and, for SentencePiece kinds, its serialized `.model` (else None)."""
  tokenizer: Tokenizer
  sentencepiece_model: bytes | None = None


def check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ValueError(f'data.tokenizer={kind!r}: expected one of {KINDS}.')


def minimum_vocab_size(kind: str) -> int:
  """The smallest model.vocab_size a tokenizer of `kind` fits in."""
  check_kind(kind)
  specials = tokenizer_lib.SPECIAL_TOKENS
  if kind == 'bpe':
    return len(specials) + 256
  if kind in sentencepiece_tokenizer.KINDS:
    return sentencepiece_tokenizer.minimum_vocab_size(specials)
  if kind == 'wordpiece':
    return wordpiece.minimum_vocab_size(specials)
  return char_byte.minimum_vocab_size(specials)


def train(kind: str, texts, vocab_size: int, max_chars: int) -> Trained:
  """A tokenizer of `kind` with at most `vocab_size` ids, fitted on `texts` (a ValueError names
  data.tokenizer, model.vocab_size or data.tokenizer_train_chars when one is unusable)."""
  minimum = minimum_vocab_size(kind)
  if vocab_size < minimum:
    raise ValueError(f'model.vocab_size={vocab_size} is too small for data.tokenizer={kind!r}: '
                     f'it needs at least {minimum} (special tokens included).')
  if max_chars <= 0:
    raise ValueError(f'data.tokenizer_train_chars={max_chars} must be positive.')
  specials = tokenizer_lib.SPECIAL_TOKENS
  if kind == 'bpe':
    return Trained(tokenizer_lib.train_tokenizer(texts, vocab_size, max_chars))
  if kind in sentencepiece_tokenizer.KINDS:
    model = sentencepiece_tokenizer.train_model(texts, kind, vocab_size, max_chars, specials)
    return Trained(sentencepiece_tokenizer.from_model(model), model)
  capped = tokenizer_lib.capped(texts, max_chars)
  if kind == 'wordpiece':
    return Trained(wordpiece.train(capped, vocab_size, specials))
  if kind == 'char':
    return Trained(char_byte.train_char(capped, vocab_size, specials))
  return Trained(char_byte.train_byte(specials))


def load(path) -> Trained:
  """A `tokenizer.json` (any Hugging Face tokenizer) or a SentencePiece `.model` (Llama, T5)."""
  path = os.fspath(path)
  if not path.endswith(SENTENCEPIECE_SUFFIX):
    return Trained(tokenizer_lib.load_tokenizer(path))
  if not as_path(path).is_file():
    raise FileNotFoundError(f'Tokenizer file {path!r} does not exist (data.tokenizer_path).')
  model = as_path(path).read_bytes()
  try:
    return Trained(sentencepiece_tokenizer.from_model(model), model)
  except ValueError as e:
    raise ValueError(f'{path!r} (data.tokenizer_path): {e}') from e
