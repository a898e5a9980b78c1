"""WordPiece tokenizers (BERT's, through Hugging Face `tokenizers`): trained on the train split.

Cased BERT normalisation (control characters dropped, CJK characters split apart, no lower-casing
or accent stripping) and BERT's pre-tokenizer (split at whitespace and punctuation). Decoding
joins words with single spaces, so a round trip keeps every character but not the whitespace
between them; a character never seen in training becomes `[UNK]`.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import Tokenizer
from tokenizers import trainers

UNK = '[UNK]'
PREFIX = '##'  # marks a piece that continues a word


def minimum_vocab_size(special_tokens: tuple[str, ...]) -> int:
  """The specials, `[UNK]` and at least one character."""
  return len(special_tokens) + 2


def train(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...]) -> Tokenizer:
  """A WordPiece of at most `vocab_size` tokens; ids 0.. are `special_tokens`, then `[UNK]`."""
  tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=PREFIX))
  tokenizer.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece(prefix=PREFIX, cleanup=False)
  trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size, special_tokens=[*special_tokens, UNK],
      continuing_subword_prefix=PREFIX, show_progress=False)
  tokenizer.train_from_iterator(texts, trainer=trainer)
  return tokenizer
