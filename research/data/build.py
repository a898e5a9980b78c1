"""Everything a training run needs from its data, built from the full config: `build_data`."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import grain
import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research import run_dir
from research.data import clean
from research.data import corpus
from research.data import mixture
from research.data import objectives
from research.data import pipeline
from research.data import tokenizer as tokenizer_lib
from research.data import tokenizer_kinds
from research.run_dir import as_path


@dataclasses.dataclass
class Data:
  """The tokenizer, this process's train iterator, the fixed eval set, and reference numbers."""
  tokenizer: Tokenizer
  special_ids: tokenizer_lib.SpecialIds
  train_iter: grain.DatasetIterator  # checkpoint with get_state/set_state or grain's handler
  eval_set: pipeline.EvalSet
  bytes_per_token: float  # UTF-8 bytes per token on the validation split
  unigram_entropy_nats: float  # entropy of train token frequencies: loss of a unigram model
  train_tokens: int  # tokens in the train split (all processes); the subset with unique_tokens
  validation_tokens: int


def unigram_entropy(stream_T: np.ndarray, vocab_size: int) -> float:
  """Entropy in nats of the token frequencies of a stream: the loss floor of a unigram model."""
  counts_V = np.bincount(np.asarray(stream_T), minlength=vocab_size).astype(np.float64)
  p_V = counts_V[counts_V > 0] / counts_V.sum()
  return float(-(p_V * np.log(p_V)).sum())


def fit_tokenizer(data_config: ml_collections.ConfigDict, vocab_size: int, train_texts,
                  extra_tokens: Sequence[str] = ()) -> tokenizer_kinds.Trained:
  """A new `data.tokenizer` on train text, leaving room for and holding `extra_tokens`."""
  trained = tokenizer_kinds.train(data_config.tokenizer, train_texts,
                                  vocab_size - len(extra_tokens),
                                  data_config.tokenizer_train_chars)
  if extra_tokens:
    trained.tokenizer.add_special_tokens(list(extra_tokens))
  return trained


def resolve_tokenizer(data_config: ml_collections.ConfigDict, vocab_size: int,
                      train_texts, workdir_tokenizer_path: str,
                      extra_tokens: Sequence[str] = ()) -> Tokenizer:
  """`data.tokenizer_path` if set; else the run's saved tokenizer; else a new `data.tokenizer` of
  `vocab_size` fitted on train text. `extra_tokens` (an objective's mask or sentinel tokens) are
  added as special tokens after the vocabulary (a fitted one leaves room for them).

  The tokenizer in use is always saved at `workdir_tokenizer_path`, so the run directory holds it;
  a SentencePiece one also leaves its `.model` beside it (run_dir.SENTENCEPIECE_FILE).
  """
  tokenizer_kinds.check_kind(data_config.tokenizer)
  if data_config.tokenizer_path:
    trained = tokenizer_kinds.load(data_config.tokenizer_path)
  elif as_path(workdir_tokenizer_path).exists():
    trained = tokenizer_kinds.Trained(tokenizer_lib.load_tokenizer(workdir_tokenizer_path))
  else:
    trained = fit_tokenizer(data_config, vocab_size, train_texts, extra_tokens)
  tokenizer = trained.tokenizer
  missing = [t for t in extra_tokens if tokenizer.token_to_id(t) is None]
  if missing:
    tokenizer.add_special_tokens(missing)
  size = tokenizer.get_vocab_size(with_added_tokens=True)
  if size > vocab_size:
    raise ValueError(f'The tokenizer has {size} tokens but model.vocab_size={vocab_size}; raise '
                     'model.vocab_size or use a smaller tokenizer (data.tokenizer_path).')
  model_path = as_path(workdir_tokenizer_path).parent / run_dir.SENTENCEPIECE_FILE
  if trained.sentencepiece_model is not None and not model_path.exists():
    model = trained.sentencepiece_model
    model_path.parent.mkdir(parents=True, exist_ok=True)
    run_dir.write_atomically(model_path, lambda tmp: as_path(tmp).write_bytes(model))
  if not as_path(workdir_tokenizer_path).exists():
    tokenizer_lib.save_tokenizer(tokenizer, workdir_tokenizer_path)
  return tokenizer


def _objective(config: ml_collections.ConfigDict, tokenizer: Tokenizer, extra):
  """The batch transform of `train.objective` (None for causal)."""
  t = config.train
  objectives.check_objective(t)
  if t.objective == 'causal':
    return None
  special = tokenizer_lib.special_ids(tokenizer)
  pad = special.pad if special.pad is not None else special.eos
  added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
  ordinary = [i for t_, i in tokenizer.get_vocab(with_added_tokens=True).items()
              if t_ not in added]
  return objectives.Objective(
      t.objective, tuple(tokenizer.token_to_id(token) for token in extra),
      vocab_size=max(ordinary) + 1, num_special=min(ordinary), pad_id=pad,
      mlm_rate=t.mlm_rate, noise_density=t.noise_density, mean_span_length=t.mean_span_length)


def _mixture_sources(data_config: ml_collections.ConfigDict, sources):
  """The (cleaned) train split of each `data.mixture` directory."""
  for directory, _ in sources:
    source_config = ml_collections.ConfigDict(data_config.to_dict())
    source_config.update(corpus='text_dir', text_dir=directory)
    yield clean.train_split(source_config)


def build_data(config: ml_collections.ConfigDict, workdir_tokenizer_path: str,
               process_index: int = 0, process_count: int = 1) -> Data:
  """Corpus -> tokenizer -> cached token streams -> train iterator and eval set, for one process.

  Train and eval batches both hold `train.batch_size` rows globally, `1/process_count` of them here.
  """
  data_config = config.data
  train_source = clean.train_split(data_config)
  validation_source = corpus.load_split(data_config, 'validation')
  extra = objectives.extra_tokens(config.train, data_config.seq_len)
  tokenizer = resolve_tokenizer(data_config, config.model.vocab_size, train_source,
                                workdir_tokenizer_path, extra)
  transform = _objective(config, tokenizer, extra)
  cache = corpus.cache_dir(data_config)
  train_T = pipeline.token_stream(train_source, tokenizer, cache)
  validation_T = pipeline.token_stream(validation_source, tokenizer, cache)
  batch_size = config.train.batch_size
  unique_tokens = data_config.unique_tokens
  sources = mixture.parse(data_config.mixture, data_config.mixture_weight)
  if sources:
    if unique_tokens:
      raise ValueError('data.unique_tokens and data.mixture cannot be combined.')
    streams = [train_T] + [pipeline.token_stream(source, tokenizer, cache)
                           for source in _mixture_sources(data_config, sources[1:])]
    train_dataset = mixture.train_dataset(streams, [w for _, w in sources], data_config.seq_len,
                                          batch_size, data_config.seed, process_index,
                                          process_count, transform)
  else:
    train_dataset = pipeline.train_dataset(train_T, data_config.seq_len, batch_size,
                                           data_config.seed, process_index, process_count,
                                           unique_tokens, transform)
  eval_set = pipeline.eval_batches(
      validation_T, data_config.seq_len, batch_size, data_config.eval_batches,
      tokenizer_lib.token_byte_lengths(tokenizer), process_index, process_count, transform)
  return Data(
      tokenizer=tokenizer,
      special_ids=tokenizer_lib.special_ids(tokenizer),
      train_iter=pipeline.iterate(train_dataset),
      eval_set=eval_set,
      bytes_per_token=tokenizer_lib.bytes_per_token(tokenizer, validation_source),
      unigram_entropy_nats=unigram_entropy(train_T, tokenizer.get_vocab_size()),
      train_tokens=(unique_tokens // data_config.seq_len * data_config.seq_len if unique_tokens
                    else len(train_T)),  # data.corpus's (with data.mixture: the first source)
      validation_tokens=len(validation_T),
  )
