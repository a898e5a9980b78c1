"""Cleaning the train split: Gopher quality rules, exact and MinHash-LSH near deduplication on a
corpus with injected duplicates, the cached counts, and the data pipeline reading the result."""

import json
import random

import pytest

from research.config import base_config
from research.data import build
from research.data import clean
from research.data import dedup
from research.data import quality

pytest.importorskip('datasketch')


def random_doc(rng: random.Random, words: int = 200) -> str:
  """Words of random letters: two such documents share almost no 5-word shingle."""
  return ' '.join(''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9)))
                  for _ in range(words))


def near_copy(rng: random.Random, text: str, edits: int) -> str:
  """`text` with `edits` words replaced by new ones."""
  words = text.split(' ')
  for i in rng.sample(range(len(words)), edits):
    words[i] = 'edit' + str(rng.randrange(10**6))
  return ' '.join(words)


def injected_corpus(seed: int = 0):
  """150 originals, then exact copies (case and whitespace changed) and near copies (2 of 200
  words replaced) of some, shuffled in after their original. -> texts, {copy: original}."""
  rng = random.Random(seed)
  texts = [random_doc(rng) for _ in range(150)]
  exact, near = {}, {}
  for original in rng.sample(range(150), 20):
    texts.append('  ' + texts[original].upper().replace(' ', ' \n '))
    exact[len(texts) - 1] = original
  for original in rng.sample(range(150), 20):
    texts.append(near_copy(rng, texts[original], 2))
    near[len(texts) - 1] = original
  return texts, exact, near


def _config(**fields):
  config = base_config()
  config.data.update(fields)
  return config.data


def test_every_injected_duplicate_is_found_and_false_positives_are_counted():
  texts, exact, near = injected_corpus()
  record = clean.run_stages(texts, _config(exact_dedup=True, near_dedup=True))
  removed = set(range(len(texts))) - set(record['kept'])
  assert set(exact) | set(near) <= removed  # every injected duplicate found
  false_positives = removed - set(exact) - set(near)
  assert record['removed'] == {'exact_dedup': len(exact),
                               'near_dedup': len(near) + len(false_positives)}
  assert false_positives == set()  # random originals share no shingles
  pairs = {copy: original for copy, original in record['near_duplicate_pairs']}
  assert pairs == near
  for copy, original in near.items():  # the injected pairs really are near the threshold
    similarity = dedup.jaccard(dedup.shingles(texts[copy], 5), dedup.shingles(texts[original], 5))
    assert 0.8 <= similarity < 1


def test_near_dedup_alone_also_catches_exact_copies_and_rejects_dissimilar_candidates():
  texts, exact, near = injected_corpus(seed=1)
  found = dedup.near_duplicates(texts, threshold=0.8)
  assert set(found.removed) == set(exact) | set(near)
  # A loose LSH proposes a dissimilar pair; the exact check turns it down and counts it.
  far = [random_doc(random.Random(2)), None]
  far[1] = near_copy(random.Random(3), far[0], 20)  # 20 of 200 words: Jaccard about 0.4
  loose = dedup.near_duplicates(far, threshold=0.9, lsh_threshold=0.05)
  assert loose.removed == [] and loose.candidates_rejected == 1


def test_exact_dedup_normalises_case_whitespace_and_unicode():
  texts = ['Hello  World', 'hello world', ' HELLO\tworld\n', 'ﬁne', 'fine', 'hello worlds']
  assert dedup.exact_duplicates(texts) == [1, 2, 4]


GOOD = ' '.join(['the history of the old town is told in letters'] * 1) + ' ' + random_doc(
    random.Random(5), 80)


@pytest.mark.parametrize('text, rule', [
    ('short text of few words', 'word_count'),
    (' '.join(['a'] * 60), 'mean_word_length'),
    (' '.join(['internationalisation', 'characteristically'] * 30), 'mean_word_length'),
    (GOOD + ' #tag' * 15, 'symbol_ratio'),
    (GOOD + ' 12345' * 40, 'alpha_word_ratio'),
])
def test_each_quality_rule_catches_its_documents(text, rule):
  config = _config().quality
  assert quality.reasons(GOOD, config) == []
  assert rule in quality.reasons(text, config)


def test_repetition_rules():
  config = _config().quality
  rng = random.Random(7)
  lines = [random_doc(rng, 12) for _ in range(10)]
  repeated = '\n'.join(lines + lines[:5])  # a third of the lines repeat earlier ones
  assert {'duplicate_lines', 'duplicate_line_chars'} <= set(quality.reasons(repeated, config))
  looping = ' '.join([random_doc(rng, 6)] * 12)  # one 6-word phrase, again and again
  assert {'top_ngram', 'duplicate_ngram'} <= set(quality.reasons(looping, config))
  unique = '\n'.join(lines)
  assert quality.reasons(unique, config) == []


def test_bad_thresholds_name_the_field():
  with pytest.raises(ValueError, match=r'data.quality.max_symbol_ratio=1.5'):
    clean.run_stages(['x'], _config(quality_filter=True, quality={'max_symbol_ratio': 1.5}))
  with pytest.raises(ValueError, match=r'data.near_dedup_threshold=0'):
    clean.run_stages(['x'], _config(near_dedup=True, near_dedup_threshold=0.0))
  with pytest.raises(ValueError, match=r'data.near_dedup_lsh_threshold=0.9'):
    clean.run_stages(['x'], _config(near_dedup=True, near_dedup_lsh_threshold=0.9))


def test_cleaning_is_cached_with_its_counts_and_feeds_the_pipeline(tmp_path):
  texts, exact, near = injected_corpus(seed=3)
  docs = tmp_path / 'docs'
  docs.mkdir()
  for i, text in enumerate(texts):
    (docs / f'{i:03d}.txt').write_text(text)
  config = base_config()
  config.model.vocab_size = 320
  config.data.update(corpus='text_dir', text_dir=str(docs), data_dir=str(tmp_path / 'cache'),
                     seq_len=16, eval_batches=1, validation_fraction=0.1, exact_dedup=True,
                     near_dedup=True, quality_filter=True)
  config.train.batch_size = 2
  logged = []
  source = clean.train_split(config.data, log=logged.append)
  records = list((tmp_path / 'cache' / 'clean').glob('*.json'))
  assert len(records) == 1 and 'kept' in logged[0]
  record = json.loads(records[0].read_text())
  assert record['documents'] == len(source) + sum(record['removed'].values())
  assert record['removed']['quality_filter'] == 0  # random words pass the Gopher rules
  assert record['removed']['exact_dedup'] + record['removed']['near_dedup'] >= 1
  assert list(source) == [source[i] for i in range(len(source))]
  again = clean.train_split(config.data, log=logged.append)  # read back, not recomputed
  assert len(logged) == 1 and again.fingerprint == source.fingerprint
  data = build.build_data(config, str(tmp_path / 'run' / 'tokenizer.json'))
  assert next(data.train_iter)['inputs'].shape == (2, 16)
  config.data.update(exact_dedup=False, near_dedup=False, quality_filter=False)
  assert clean.train_split(config.data).fingerprint != source.fingerprint


@pytest.mark.parametrize('fields, expected', [
    (dict(tokenizer='unigram'), "data.tokenizer='unigram'"),
    (dict(tokenizer='char', vocab_size=200), 'model.vocab_size=200: too small for '
     "data.tokenizer='char'"),
    (dict(quality_filter=True, quality={'min_alpha_word_ratio': -0.1}),
     'data.quality.min_alpha_word_ratio=-0.1'),
    (dict(near_dedup=True, near_dedup_threshold=1.2), 'data.near_dedup_threshold=1.2'),
    (dict(mixture='/a:-2'), r'data.mixture (/a): weight -2.0'),
    (dict(mixture='/a:0', mixture_weight=0.0), 'sum to zero'),
])
def test_the_config_check_names_the_new_data_fields(fields, expected):
  from research.train.validate import validate_config
  config = base_config()
  config.model.vocab_size = fields.pop('vocab_size', config.model.vocab_size)
  config.data.update(fields)
  with pytest.raises(ValueError) as err:
    validate_config(config, num_devices=1)
  assert expected in str(err.value)
