"""The chat template: special tokens added to a run's tokenizer, and records turned into token ids.

A conversation is `<start> <|user|> prompt <|assistant|> response <|end|>`, where <start> is the
tokenizer's end-of-document token (every document but the first starts after one in pretraining).
Prompt and response text are encoded as plain text, so a special token's spelling inside them is
never read as that token.
"""

from __future__ import annotations

import dataclasses

from tokenizers import AddedToken, Tokenizer

from research.data import tokenizer as tokenizer_lib

USER, ASSISTANT, END = '<|user|>', '<|assistant|>', '<|end|>'
CHAT_TOKENS = (USER, ASSISTANT, END)


def with_chat_tokens(tokenizer: Tokenizer) -> Tokenizer:
  """A copy of `tokenizer` with the chat tokens added as special tokens (ids after its vocabulary);
  the same tokenizer back if it has them already."""
  out = Tokenizer.from_str(tokenizer.to_str())
  missing = [t for t in CHAT_TOKENS if out.token_to_id(t) is None]
  if missing:
    out.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
  return out


def vocab_size(tokenizer: Tokenizer) -> int:
  """Ids the tokenizer can produce: its vocabulary plus added tokens."""
  return tokenizer.get_vocab_size(with_added_tokens=True)


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """Token ids of prompts and responses in the template of a tokenizer that has the chat tokens."""
  encoder: Tokenizer  # reads special-token spellings as text
  decoder: Tokenizer
  start_id: int
  user_id: int
  assistant_id: int
  end_id: int
  pad_id: int

  @classmethod
  def of(cls, tokenizer: Tokenizer) -> 'ChatTemplate':
    ids = {t: tokenizer.token_to_id(t) for t in CHAT_TOKENS}
    if None in ids.values():
      raise ValueError(f'the tokenizer lacks the chat tokens {CHAT_TOKENS}; use with_chat_tokens')
    special = tokenizer_lib.special_ids(tokenizer)
    return cls(tokenizer_lib.text_encoder(tokenizer), tokenizer, special.eos, ids[USER],
               ids[ASSISTANT], ids[END], special.eos if special.pad is None else special.pad)

  def encode(self, text: str) -> list[int]:
    return self.encoder.encode(text, add_special_tokens=False).ids

  def prompt_ids(self, prompt: str) -> list[int]:
    """<start> <|user|> prompt <|assistant|>: everything the model sees before it answers."""
    return [self.start_id, self.user_id, *self.encode(prompt), self.assistant_id]

  def response_ids(self, response: str) -> list[int]:
    """response <|end|>: the tokens a policy is trained to produce."""
    return [*self.encode(response), self.end_id]

  def response_text(self, ids) -> str:
    """The text of generated ids up to (without) the first <|end|>."""
    ids = [int(i) for i in ids]
    if self.end_id in ids:
      ids = ids[:ids.index(self.end_id)]
    return self.decoder.decode(ids, skip_special_tokens=True)
