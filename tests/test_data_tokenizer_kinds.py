"""Every `data.tokenizer` kind: round trips of fresh random text, special ids, byte accounting,
SentencePiece models encoding like `sentencepiece` and `transformers`, the run directory, errors."""

import random

import numpy as np
import pytest

from research import run_dir
from research.config import base_config
from research.data import build
from research.data import corpus as corpus_lib
from research.data import sentencepiece_tokenizer
from research.data import shared_tokenizers
from research.data import tokenizer as tok
from research.data import tokenizer_kinds

spm = pytest.importorskip('sentencepiece')

LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
RARE = 'éüßçñøå—…«»日本語中文🙂🚀€Ωπ'  # accents, CJK, emoji: several bytes each
PUNCT = '.,;:!?\'"()-'


def random_text(rng: random.Random, words: int) -> str:
  """Words of random letters (now and then a rare character), punctuation, and whitespace runs
  of spaces, tabs and newlines: text no tokenizer has seen whole."""
  out = []
  for _ in range(words):
    word = ''.join(rng.choice(LETTERS[:12] if rng.random() < 0.7 else LETTERS)
                   for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.1:
      word += rng.choice(RARE)
    if rng.random() < 0.15:
      word += rng.choice(PUNCT)
    out.append(word)
    out.append(rng.choice([' '] * 12 + ['  ', '\n', '\t', ' \n\n', '   ']))
  return ''.join(out)


def corpus(num_docs: int, seed: int) -> list[str]:
  rng = random.Random(seed)
  return [random_text(rng, rng.randint(20, 120)) for _ in range(num_docs)]


@pytest.fixture(scope='module')
def trained():
  texts = corpus(150, seed=0)
  return {kind: tokenizer_kinds.train(kind, texts, vocab_size=420, max_chars=1_000_000)
          for kind in tokenizer_kinds.KINDS}


@pytest.mark.parametrize('kind', [k for k in tokenizer_kinds.KINDS if k != 'wordpiece'])
def test_every_exact_kind_round_trips_fresh_random_text(trained, kind):
  tokenizer = trained[kind].tokenizer
  texts = corpus(20, seed=1) + ['', ' ', '  leading and trailing  ', 'a\n\n\tb']
  if kind != 'sentencepiece_unigram':  # see tokenizer_kinds.INEXACT
    texts.append('<|eos|> <unk> <0x41> [UNK]')
  for text, ids in zip(texts, tok.encode_texts(tokenizer, texts)):
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < 420 for i in ids)
    assert not {0, 1, 2} & set(ids)  # special tokens written in a text stay plain text


def test_unigram_reads_a_spelled_control_piece_as_that_piece(trained):
  tokenizer = trained['sentencepiece_unigram'].tokenizer
  assert tok.encode_texts(tokenizer, ['<unk>'])[0] == [3]
  assert 'control or byte piece' in tokenizer_kinds.INEXACT['sentencepiece_unigram']


def test_wordpiece_keeps_every_character_but_not_the_whitespace(trained):
  tokenizer = trained['wordpiece'].tokenizer
  unk = tokenizer.token_to_id('[UNK]')
  texts = corpus(20, seed=1)
  for text, ids in zip(texts, tok.encode_texts(tokenizer, texts)):
    decoded = tokenizer.decode(ids)
    if unk not in ids:
      assert ''.join(decoded.split()) == ''.join(text.split())
  assert tokenizer.decode(tok.encode_texts(tokenizer, ['ab  cd\nef'])[0]) == 'ab cd ef'
  assert 'wordpiece' in tokenizer_kinds.INEXACT


@pytest.mark.parametrize('kind', tokenizer_kinds.KINDS)
def test_special_ids_vocabulary_and_learning(trained, kind):
  tokenizer = trained[kind].tokenizer
  assert tok.special_ids(tokenizer) == tok.SpecialIds(eos=2, bos=1, pad=0)
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  assert size <= 420
  text = corpus(1, seed=2)[0]
  ids = tok.encode_texts(tokenizer, [text])[0]
  if kind == 'byte':
    assert size == 3 + 256 and len(ids) == len(text.encode('utf-8'))
  elif kind == 'char':
    assert len(ids) >= len(text)
  else:  # subword kinds learn pieces longer than a character
    assert len(ids) < 0.8 * len(text)


@pytest.mark.parametrize('kind', [k for k in tokenizer_kinds.KINDS if k != 'wordpiece'])
def test_token_byte_lengths_sum_to_the_utf8_length(trained, kind):
  tokenizer = trained[kind].tokenizer
  lengths_V = tok.token_byte_lengths(tokenizer)
  assert (lengths_V[:3] == 0).all()
  for text, ids in zip(texts := corpus(10, seed=3), tok.encode_texts(tokenizer, texts)):
    assert lengths_V[np.asarray(ids, np.int64)].sum() == len(text.encode('utf-8'))


def assert_same_up_to_ties(ours, theirs, processor):
  """Equal ids, except in at most a tenth of the texts, where a unigram lattice holds two best
  segmentations whose scores tie to float precision (summed in float32 by SentencePiece, float64
  by `tokenizers`): both must then spell the same text with the same score."""
  differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
  assert len(differ) <= len(ours) // 10, differ
  score = lambda ids: sum(processor.get_score(i) for i in ids)
  for i in differ:
    assert processor.decode(ours[i]) == processor.decode(theirs[i])
    assert score(ours[i]) == pytest.approx(score(theirs[i]), abs=1e-4)


@pytest.mark.parametrize('kind', sorted(sentencepiece_tokenizer.KINDS))
def test_trained_sentencepiece_encodes_like_sentencepiece_itself(trained, kind):
  model = trained[kind].sentencepiece_model
  processor = spm.SentencePieceProcessor(model_proto=model)
  tokenizer = trained[kind].tokenizer
  texts = corpus(30, seed=4)
  ours, theirs = tok.encode_texts(tokenizer, texts), [processor.encode(t) for t in texts]
  if kind == 'sentencepiece_bpe':  # merges by rank: no sums of scores, no ties
    assert ours == theirs
  else:
    assert_same_up_to_ties(ours, theirs, processor)
  assert processor.piece_to_id('<|eos|>') == 2 and processor.unk_id() == 3


def _train_external(tmp_path, **options):
  """A small SentencePiece model with a published model's settings, written where
  `transformers` looks for one: DIR/tokenizer.model."""
  prefix = str(tmp_path / 'tokenizer')
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter([line for t in corpus(120, seed=5) for line in t.split('\n')
                              if line.strip()]),
      model_prefix=prefix, vocab_size=500, minloglevel=2, hard_vocab_limit=False, **options)
  return prefix + '.model'


def test_llama_style_model_encodes_like_transformers(tmp_path):
  from transformers import LlamaTokenizer
  path = _train_external(tmp_path, model_type='bpe', byte_fallback=True,
                         normalization_rule_name='identity', remove_extra_whitespaces=False,
                         split_digits=True, add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2)
  loaded = tokenizer_kinds.load(path).tokenizer
  reference = LlamaTokenizer.from_pretrained(str(tmp_path))  # transformers' own conversion
  processor = spm.SentencePieceProcessor(model_file=path)
  texts = [t.replace('\n', ' ') for t in corpus(30, seed=6)]
  ours = tok.encode_texts(loaded, texts)
  assert ours == [processor.encode(t) for t in texts]
  assert ours == [reference.encode(t, add_special_tokens=False) for t in texts]
  assert tok.special_ids(loaded).eos == 2


def test_t5_style_model_encodes_like_transformers(tmp_path):
  from transformers import T5Tokenizer
  path = _train_external(tmp_path, model_type='unigram', normalization_rule_name='nmt_nfkc',
                         pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  loaded = tokenizer_kinds.load(path).tokenizer
  reference = T5Tokenizer.from_pretrained(str(tmp_path), extra_ids=0)
  processor = spm.SentencePieceProcessor(model_file=path)
  texts = corpus(30, seed=7)
  ours = tok.encode_texts(loaded, texts)
  assert_same_up_to_ties(ours, [processor.encode(t) for t in texts], processor)
  assert_same_up_to_ties(ours, [reference.encode(t, add_special_tokens=False) for t in texts],
                         processor)
  assert tok.special_ids(loaded) == tok.SpecialIds(eos=1, bos=None, pad=0)


def _config(tmp_path, kind, vocab_size=420):
  config = base_config()
  config.data.update(tokenizer=kind, tokenizer_train_chars=1_000_000)
  config.model.vocab_size = vocab_size
  return config


def test_run_directory_keeps_the_sentencepiece_model_and_reloads_it(tmp_path):
  config = _config(tmp_path, 'sentencepiece_unigram')
  path = str(tmp_path / 'run' / run_dir.TOKENIZER_FILE)
  texts = corpus(60, seed=8)
  first = build.resolve_tokenizer(config.data, 420, texts, path)
  model_path = tmp_path / 'run' / run_dir.SENTENCEPIECE_FILE
  assert model_path.is_file()
  again = build.resolve_tokenizer(config.data, 420, ['unused'], path)  # the saved one, not refit
  assert tok.fingerprint(again) == tok.fingerprint(first)
  config.data.tokenizer_path = str(model_path)  # a .model given by path
  other = str(tmp_path / 'other' / run_dir.TOKENIZER_FILE)
  from_model = build.resolve_tokenizer(config.data, 420, ['unused'], other)
  assert tok.encode_texts(from_model, texts) == tok.encode_texts(first, texts)
  assert (tmp_path / 'other' / run_dir.SENTENCEPIECE_FILE).read_bytes() == model_path.read_bytes()


def test_bad_inputs_name_the_field(tmp_path):
  with pytest.raises(ValueError, match=r"data.tokenizer='wordpeice'"):
    build.resolve_tokenizer(_config(tmp_path, 'wordpeice').data, 420, ['x'],
                            str(tmp_path / 'tokenizer.json'))
  for kind in tokenizer_kinds.KINDS:
    minimum = tokenizer_kinds.minimum_vocab_size(kind)
    with pytest.raises(ValueError, match=rf'model.vocab_size={minimum - 1} is too small for '
                                         rf"data.tokenizer='{kind}'"):
      tokenizer_kinds.train(kind, ['some text'], minimum - 1, 1000)
  with pytest.raises(ValueError, match='data.tokenizer_train_chars=0'):
    tokenizer_kinds.train('char', ['some text'], 400, 0)
  bad = tmp_path / 'bad.model'
  bad.write_bytes(b'not a model')
  with pytest.raises(ValueError, match='data.tokenizer_path'):
    tokenizer_kinds.load(bad)


def test_a_run_and_a_sweep_train_and_share_a_sentencepiece_tokenizer(tmp_path):
  docs = tmp_path / 'docs'
  docs.mkdir()
  for i, text in enumerate(corpus(60, seed=9)):
    (docs / f'{i}.txt').write_text(text)
  config = _config(tmp_path, 'sentencepiece_bpe')
  config.data.update(corpus='text_dir', text_dir=str(docs), data_dir=str(tmp_path / 'cache'),
                     seq_len=16, eval_batches=2, validation_fraction=0.2)
  config.train.batch_size = 4
  data = build.build_data(config, str(tmp_path / 'run' / run_dir.TOKENIZER_FILE))
  assert next(data.train_iter)['inputs'].shape == (4, 16)
  # Bytes of the eval targets, as bits per byte counts them: exact for this tokenizer.
  validation = list(corpus_lib.load_split(config.data, 'validation'))
  assert data.bytes_per_token == pytest.approx(
      sum(len(t.encode('utf-8')) for t in validation) / (data.validation_tokens - len(validation)))
  runs = [(f'r{i}', config, tmp_path / 'sweep' / f'r{i}') for i in range(2)]
  for _, _, directory in runs:
    directory.mkdir(parents=True)
  logged = []
  shared_tokenizers.prepare_data(runs, tmp_path / 'sweep' / 'tokenizers', log=logged.append)
  assert not [line for line in logged if 'warning' in line]
  for _, _, directory in runs:
    assert (directory / run_dir.SENTENCEPIECE_FILE).read_bytes() == \
        (tmp_path / 'run' / run_dir.SENTENCEPIECE_FILE).read_bytes()
    assert tok.fingerprint(tok.load_tokenizer(directory / run_dir.TOKENIZER_FILE)) == \
        tok.fingerprint(data.tokenizer)
