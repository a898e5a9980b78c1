"""MLM, span-corruption and prefix-LM examples: hand-worked cases, invariants on random windows,
masking statistics on a large sample, errors."""

import numpy as np
import pytest

from research.data import objectives as obj

S0, S1, S2 = 990, 991, 992  # sentinels
MASK_ID = 3


def test_mlm_hand_worked():
  tokens = [5, 6, 7, 8, 9, 10]
  selected = np.array([0, 1, 0, 1, 1, 0], bool)
  action = np.array([obj.MASK, obj.MASK, obj.RANDOM, obj.RANDOM, obj.KEEP, obj.MASK])
  random = np.array([50, 51, 52, 42, 54, 55])
  example = obj.apply_mlm(tokens, selected, action, random, MASK_ID)
  np.testing.assert_array_equal(example['inputs'], [5, MASK_ID, 7, 42, 9, 10])
  np.testing.assert_array_equal(example['targets'], tokens)
  np.testing.assert_array_equal(example['weights'], [0, 1, 0, 1, 1, 0])
  assert example['prefix'] == 6  # bidirectional


def test_span_corruption_hand_worked():
  tokens = np.arange(10, 20)
  noise = np.zeros(10, bool)
  noise[[2, 3, 7]] = True
  inputs, targets = obj.corrupt_spans(tokens, noise, [S0, S1, S2])
  np.testing.assert_array_equal(inputs, [10, 11, S0, 14, 15, 16, S1, 18, 19])
  np.testing.assert_array_equal(targets, [S0, 12, 13, S1, 17])
  example = obj.as_prefix_lm(inputs, targets, seq_len=16, pad_id=0)
  np.testing.assert_array_equal(example['inputs'][:14], [*inputs, *targets][:14])
  np.testing.assert_array_equal(example['inputs'][14:], [0, 0])
  np.testing.assert_array_equal(example['targets'][8:13], targets)  # predicted after the inputs
  np.testing.assert_array_equal(np.flatnonzero(example['weights']), [8, 9, 10, 11, 12])
  assert example['prefix'] == 9


def test_prefix_lm_hand_worked():
  example = obj.as_prefix_lm(np.array([1, 2, 3]), np.array([4, 5]), seq_len=4, pad_id=0)
  np.testing.assert_array_equal(example['inputs'], [1, 2, 3, 4])
  np.testing.assert_array_equal(example['targets'], [2, 3, 4, 5])
  np.testing.assert_array_equal(example['weights'], [0, 0, 1, 1])  # predicts 4 and 5 only
  assert example['prefix'] == 3
  drawn = obj.prefix_lm_example(np.arange(100, 117), np.random.default_rng(0))
  p = int(drawn['prefix'])
  assert 1 <= p <= 15 and drawn['weights'].sum() == 16 - (p - 1)
  np.testing.assert_array_equal(drawn['targets'], np.arange(101, 117))


def test_mlm_statistics_match_the_rates():
  rng = np.random.default_rng(0)
  selected = masked = replaced = kept = total = 0
  for _ in range(1000):
    tokens = rng.integers(4, 1000, 128)
    example = obj.mlm_example(tokens, rng, MASK_ID, vocab_size=1000, num_special=4)
    chosen = example['weights'] > 0
    total += len(tokens)
    selected += chosen.sum()
    masked += (example['inputs'][chosen] == MASK_ID).sum()
    kept += (example['inputs'][chosen] == tokens[chosen]).sum()
    replaced += ((example['inputs'] != tokens) & (example['inputs'] != MASK_ID))[chosen].sum()
    assert (example['inputs'][~chosen] == tokens[~chosen]).all()
    assert (example['inputs'] >= 3).all()  # random replacements are ordinary tokens
  assert selected / total == pytest.approx(0.15, abs=0.002)  # round(0.15 * 128) = 19 of 128
  assert masked / selected == pytest.approx(0.8, abs=0.01)
  assert replaced / selected == pytest.approx(0.1, abs=0.01)
  assert kept / selected == pytest.approx(0.1, abs=0.01)


def test_mlm_never_selects_special_tokens():
  tokens = np.array([2, 2, 2, 7, 8, 2])
  for seed in range(20):
    example = obj.mlm_example(tokens, np.random.default_rng(seed), MASK_ID, 100, num_special=3)
    assert set(np.flatnonzero(example['weights'])) <= {3, 4}


@pytest.mark.parametrize('density, mean_span', [(0.15, 3.0), (0.5, 8.0), (0.3, 1.0)])
def test_noise_mask_statistics_match_the_settings(density, mean_span):
  rng = np.random.default_rng(1)
  noise_total = spans = length_total = 0
  for _ in range(1000):
    mask = obj.random_spans_noise_mask(200, density, mean_span, rng)
    assert not mask[0]  # a kept span comes first
    noise_total += mask.sum()
    spans += (mask[1:] & ~mask[:-1]).sum()
    length_total += 200
  num_noise = round(200 * density)  # T5's counts, rounded once per mask
  assert noise_total / length_total == num_noise / 200 == pytest.approx(density, abs=0.003)
  assert noise_total / spans == num_noise / round(num_noise / mean_span)
  assert noise_total / spans == pytest.approx(mean_span, rel=0.05)


def test_span_corruption_targets_fill_the_sentinels_back_to_the_text():
  rng = np.random.default_rng(2)
  sentinels = list(range(900, 1000))
  for _ in range(50):
    tokens = rng.integers(4, 800, 65)
    example = obj.span_corruption_example(tokens, rng, sentinels, pad_id=0, seq_len=64)
    p = int(example['prefix'])
    row = np.concatenate([example['inputs'][:1], example['targets']])
    inputs, targets = row[:p], row[p:][example['weights'][p - 1:] > 0]
    spans, key = {}, None
    for token in targets:
      if token >= 900:
        key = token
        spans[key] = []
      else:
        spans[key].append(token)
    rebuilt = [t for token in inputs for t in (spans[token] if token >= 900 else [token])]
    assert len(rebuilt) + 2 * len(spans) <= 65
    np.testing.assert_array_equal(rebuilt, tokens[:len(rebuilt)])
    assert len(rebuilt) >= 65 - 2 * len(spans) - 1  # as long as fits


def test_examples_are_reproducible_from_the_seed():
  tokens = np.arange(4, 69)
  make = lambda seed: obj.span_corruption_example(tokens, np.random.default_rng(seed),
                                                  list(range(900, 950)), 0, 64)
  np.testing.assert_array_equal(make(5)['inputs'], make(5)['inputs'])
  assert not np.array_equal(make(5)['inputs'], make(6)['inputs'])


@pytest.mark.parametrize('density', [0.0, 1.0, 1.5, -0.1])
def test_bad_settings_name_the_field(density):
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match=rf'train.noise_density={density}'):
    obj.random_spans_noise_mask(100, density, 3.0, rng)
  with pytest.raises(ValueError, match='train.mean_span_length=0.5'):
    obj.span_corruption_example(np.arange(50), rng, [S0], 0, 64, 0.15, 0.5)
  with pytest.raises(ValueError, match='needs 2 sentinel tokens, has 1'):
    obj.corrupt_spans(np.arange(5), np.array([0, 1, 0, 1, 0], bool), [S0])
  with pytest.raises(ValueError, match='train.mlm_rate=0'):
    obj.mlm_example(np.arange(10), rng, MASK_ID, 100, 3, rate=0.0)


@pytest.mark.parametrize('model_fields, message', [
    ({'num_experts': 4}, 'dense models only'),
    ({'block_pattern': 'MA', 'scan_layers': False}, 'Mamba layers are causal'),
    ({'mtp_heads': 2}, 'model.mtp_heads=0'),
    ({'position': 'none'}, 'cannot tell token order'),
])
def test_a_non_causal_objective_refuses_models_it_cannot_mask(model_fields, message):
  from research.config import base_config
  from research.train.validate import validate_config
  config = base_config()
  config.model.update(model_fields)
  config.train.objective = 'mlm'
  with pytest.raises(ValueError, match=rf"train.objective='mlm'.*{message}"):
    validate_config(config)
