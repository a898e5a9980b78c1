"""SentencePiece tokenizers (unigram and BPE): trained with the `sentencepiece` library, used as
Hugging Face `tokenizers` objects.

A `.model` file (trained here, or a Llama or T5 one) is converted into an equivalent `Tokenizer`,
so the pipeline, evaluation and inference code keep one tokenizer type. Models trained here keep
text exactly: no normalisation, no dummy prefix, spaces kept as they are, and byte fallback for
characters outside the vocabulary. Only U+2581 (the `▁` SentencePiece uses for a space) in the text
itself comes back as a space.
"""

from __future__ import annotations

import io
from typing import Iterable, Iterator

from tokenizers import AddedToken
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import Regex
from tokenizers import Tokenizer

SPACE = '\u2581'  # how SentencePiece writes a space inside a piece
UNK = '<unk>'
KINDS = {'sentencepiece_unigram': 'unigram', 'sentencepiece_bpe': 'bpe'}
_SENTENCE_CHARS = 4000  # training text is fed in chunks of about this many characters
# Piece types of sentencepiece_model.proto.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_NEVER = -1e9  # the score of pieces the text itself never produces (controls, bytes, unk)


def _sentences(texts: Iterable[str], max_chars: int) -> Iterator[str]:
  """The first `max_chars` characters of `texts`, in chunks of whole lines (newlines kept)."""
  left = max_chars
  for text in texts:
    if left <= 0:
      return
    text = text[:left]
    left -= len(text)
    chunk = ''
    for line in text.splitlines(keepends=True):
      if chunk and len(chunk) + len(line) > _SENTENCE_CHARS:
        yield chunk
        chunk = ''
      chunk += line[:_SENTENCE_CHARS]
    if chunk:
      yield chunk


def _library():
  try:
    import sentencepiece  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError('SentencePiece tokenizers need the sentencepiece library: '
                      "pip install -e '.[sentencepiece]'") from e
  return sentencepiece


def minimum_vocab_size(special_tokens: tuple[str, ...]) -> int:
  """Specials, `<unk>`, the 256 byte-fallback pieces and at least one character."""
  return len(special_tokens) + 1 + 256 + 1


def train_model(texts: Iterable[str], kind: str, vocab_size: int, max_chars: int,
                special_tokens: tuple[str, str, str]) -> bytes:
  """A serialized SentencePiece model of `kind` ('sentencepiece_unigram' | 'sentencepiece_bpe')
  fitted on the first `max_chars` characters of `texts`; ids 0, 1, 2 are `special_tokens`
  (pad, bos, eos) and 3 is `<unk>`. A small corpus may stop short of `vocab_size`."""
  spm = _library()
  pad, bos, eos = special_tokens
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(texts, max_chars), model_writer=model,
        model_type=KINDS[kind], vocab_size=vocab_size, hard_vocab_limit=False,
        normalization_rule_name='identity', add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, byte_fallback=True,
        character_coverage=0.9995, max_sentence_length=4 * _SENTENCE_CHARS + 16,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=pad, bos_piece=bos, eos_piece=eos,
        unk_piece=UNK, num_threads=2, minloglevel=2)
  except RuntimeError as e:
    raise ValueError(f'data.tokenizer={kind!r} with model.vocab_size={vocab_size}: SentencePiece '
                     f'training failed: {e}') from e
  return model.getvalue()


def _proto(model: bytes):
  _library()
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel
  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(model)
  except Exception as e:  # protobuf's DecodeError
    raise ValueError(f'not a SentencePiece model: {e}') from e
  if not proto.pieces:
    raise ValueError('not a SentencePiece model: it has no pieces')
  return proto


def _bpe_merges(pieces: dict[str, tuple[int, float]]) -> list[tuple[str, str]]:
  """Merges that rebuild SentencePiece's BPE from its vocabulary: every split of a piece into two
  pieces, ranked by the merged piece's score (SentencePiece merges the best-scoring pair first)."""
  merges = []
  for piece, (piece_id, score) in pieces.items():
    local = [(piece[:i], piece[i:]) for i in range(1, len(piece))
             if piece[:i] in pieces and piece[i:] in pieces]
    local.sort(key=lambda lr: (pieces[lr[0]][0], pieces[lr[1]][0]))
    merges += [(-score, piece_id, left, right) for left, right in local]
  merges.sort(key=lambda m: (m[0], m[1]))
  return [(left, right) for _, _, left, right in merges]


def from_model(model: bytes) -> Tokenizer:
  """The `tokenizers` equivalent of a serialized SentencePiece unigram or BPE model: the same
  normaliser (precompiled rules, whitespace clean-up, dummy prefix), pieces, ids and decoding."""
  proto = _proto(model)
  trainer, spec = proto.trainer_spec, proto.normalizer_spec
  if trainer.treat_whitespace_as_suffix:
    raise ValueError('SentencePiece models with treat_whitespace_as_suffix are not supported')
  byte_fallback = bool(trainer.byte_fallback)
  types = [p.type for p in proto.pieces]
  unk_id = types.index(_UNKNOWN) if _UNKNOWN in types else None
  if trainer.model_type == 1:  # UNIGRAM
    vocab = [(p.piece, p.score if p.type in (_NORMAL, _USER_DEFINED) else _NEVER)
             for p in proto.pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id, byte_fallback))
  elif trainer.model_type == 2:  # BPE
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    normal = {p.piece: (i, p.score) for i, p in enumerate(proto.pieces) if p.type == _NORMAL}
    tokenizer = Tokenizer(models.BPE(
        vocab, _bpe_merges(normal), unk_token=proto.pieces[unk_id].piece if unk_id is not None
        else None, byte_fallback=byte_fallback, fuse_unk=True))
  else:
    raise ValueError(f'SentencePiece model_type={trainer.model_type}: only unigram (1) and '
                     'BPE (2) models are supported')
  steps = []
  if spec.precompiled_charsmap:
    steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
  if spec.remove_extra_whitespaces:
    steps += [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(' {2,}'), ' ')]
  if spec.add_dummy_prefix:
    steps.append(normalizers.Prepend(' '))
  steps.append(normalizers.Replace(' ', SPACE))
  tokenizer.normalizer = normalizers.Sequence(steps)
  decode = [decoders.Replace(SPACE, ' '), decoders.ByteFallback(), decoders.Fuse()]
  if spec.add_dummy_prefix:
    decode.append(decoders.Strip(' ', 1, 0))
  tokenizer.decoder = decoders.Sequence(decode)
  tokenizer.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                                for p in proto.pieces if p.type in (_CONTROL, _UNKNOWN)])
  user = [AddedToken(p.piece, special=False, normalized=False)
          for p in proto.pieces if p.type == _USER_DEFINED]
  if user:
    tokenizer.add_tokens(user)
  # Through JSON once: scores then read back from a saved tokenizer.json exactly as they are here.
  return Tokenizer.from_str(tokenizer.to_str())
