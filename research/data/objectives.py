"""Pretraining examples beside next-token prediction, built from a window of tokens (numpy).

Every example is {'inputs': [T], 'targets': [T], 'weights': [T] (1 where the loss counts),
'prefix': () (the attention mask is bidirectional over the first `prefix` positions, causal after;
see research/model/attention.prefix_mask)}:

- `mlm` (BERT, Devlin et al. 2019): 15% of the (non-special) positions are selected; of those 80%
  become the mask token, 10% a random token, 10% stay; the loss is on the selected positions,
  whose targets are the original tokens; attention is bidirectional (prefix = T).
- `span_corruption` (T5, Raffel et al. 2020): `random_spans_noise_mask` picks spans covering
  `noise_density` of the tokens, `mean_span_length` long on average; the inputs keep the other
  tokens with one sentinel per dropped span, the targets are each sentinel followed by its span.
  Run as a prefix LM: [inputs; targets] in one row, bidirectional over the inputs, loss on the
  targets.
- `prefix_lm`: a random split; bidirectional over the prefix, next-token loss after it.

Randomness comes from a numpy Generator seeded per example (grain's `random_map` seeds it by the
element's index), so the pipeline stays reproducible and resumes exactly. `Objective` turns a
window example into one of these; `extra_tokens` are the special tokens it needs (the mask token,
the sentinels), added to the run's tokenizer after its vocabulary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

OBJECTIVES = ('causal', 'mlm', 'span_corruption', 'prefix_lm')
KEEP, MASK, RANDOM = 0, 1, 2  # what happens to a selected MLM position
MASK_TOKEN = '<|mask|>'
SENTINEL_TOKEN = '<|sentinel_{}|>'


def check_span_settings(noise_density: float, mean_span_length: float) -> None:
  if not 0 < noise_density < 1:
    raise ValueError(f'train.noise_density={noise_density}: must lie in (0, 1).')
  if mean_span_length < 1:
    raise ValueError(f'train.mean_span_length={mean_span_length}: must be >= 1.')


def apply_mlm(tokens_T, selected_T, action_T, random_T, mask_id: int) -> dict[str, np.ndarray]:
  """The MLM example for explicit choices: `selected_T` bool, `action_T` KEEP | MASK | RANDOM,
  `random_T` the replacement tokens where action is RANDOM."""
  tokens_T = np.asarray(tokens_T, np.int32)
  inputs_T = tokens_T.copy()
  inputs_T[selected_T & (action_T == MASK)] = mask_id
  replace_T = selected_T & (action_T == RANDOM)
  inputs_T[replace_T] = np.asarray(random_T, np.int32)[replace_T]
  return {'inputs': inputs_T, 'targets': tokens_T, 'weights': selected_T.astype(np.float32),
          'prefix': np.int32(len(tokens_T))}


def mlm_example(tokens_T, rng: np.random.Generator, mask_id: int, vocab_size: int,
                num_special: int, rate: float = 0.15,
                split: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
  """BERT masking of a window: round(rate * n) of the n positions holding ordinary tokens (ids
  >= num_special) are selected (at least one); random replacements are ordinary tokens."""
  if not 0 < rate < 1:
    raise ValueError(f'train.mlm_rate={rate}: must lie in (0, 1).')
  tokens_T = np.asarray(tokens_T, np.int32)
  eligible = np.flatnonzero(tokens_T >= num_special)
  count = min(len(eligible), max(1, round(rate * len(eligible))))
  selected_T = np.zeros(len(tokens_T), bool)
  selected_T[rng.choice(eligible, count, replace=False)] = True
  action_T = rng.choice([MASK, RANDOM, KEEP], len(tokens_T), p=split).astype(np.int32)
  random_T = rng.integers(num_special, vocab_size, len(tokens_T))
  return apply_mlm(tokens_T, selected_T, action_T, random_T, mask_id)


def _random_segmentation(rng: np.random.Generator, num_items: int, num_segments: int):
  """Lengths of `num_segments` non-empty segments that sum to `num_items`, uniformly at random."""
  cuts = np.sort(rng.choice(np.arange(1, num_items), num_segments - 1, replace=False))
  return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(length: int, noise_density: float, mean_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """T5's noise mask, bool [length]: round(length * density) noise tokens (at least 1, at most
  length - 1) in round(noise / mean_span_length) spans (at least 1), alternating with kept
  spans, starting with a kept one."""
  check_span_settings(noise_density, mean_span_length)
  num_noise = min(max(round(length * noise_density), 1), length - 1)
  num_spans = min(max(round(num_noise / mean_span_length), 1), num_noise, length - num_noise)
  noise_lengths = _random_segmentation(rng, num_noise, num_spans)
  keep_lengths = _random_segmentation(rng, length - num_noise, num_spans)
  mask = np.zeros(length, bool)
  start = 0
  for keep, noise in zip(keep_lengths, noise_lengths):
    start += keep
    mask[start:start + noise] = True
    start += noise
  return mask


def corrupt_spans(tokens_L, noise_L, sentinel_ids) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) of T5 span corruption: span k of noise becomes sentinel k in the inputs,
  and the targets are sentinel k then its tokens, for each span in order."""
  tokens_L = np.asarray(tokens_L, np.int32)
  inputs, targets, span = [], [], -1
  for i, (token, noise) in enumerate(zip(tokens_L, noise_L)):
    if noise and (i == 0 or not noise_L[i - 1]):
      span += 1
      if span >= len(sentinel_ids):
        raise ValueError(f'span corruption needs {span + 1} sentinel tokens, has '
                         f'{len(sentinel_ids)}.')
      inputs.append(sentinel_ids[span])
      targets.append(sentinel_ids[span])
    (targets if noise else inputs).append(token)
  return np.asarray(inputs, np.int32), np.asarray(targets, np.int32)


def as_prefix_lm(prefix_P, rest_R, seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
  """One row `[prefix; rest]` (padded with `pad_id`) as a prefix-LM example of `seq_len`
  positions: next-token targets, loss on predicting each token of `rest`."""
  row = np.concatenate([prefix_P, rest_R]).astype(np.int32)
  if len(row) > seq_len + 1:
    raise ValueError(f'{len(row)} tokens do not fit in data.seq_len+1={seq_len + 1}.')
  padded = np.full(seq_len + 1, pad_id, np.int32)
  padded[:len(row)] = row
  weights_T = np.zeros(seq_len, np.float32)
  weights_T[len(prefix_P) - 1:len(row) - 1] = 1.0  # targets at positions len(prefix)..len(row)-1
  return {'inputs': padded[:-1], 'targets': padded[1:], 'weights': weights_T,
          'prefix': np.int32(len(prefix_P))}


def span_corruption_example(tokens, rng: np.random.Generator, sentinel_ids, pad_id: int,
                            seq_len: int, noise_density: float = 0.15,
                            mean_span_length: float = 3.0) -> dict[str, np.ndarray]:
  """Span corruption of `tokens` (at most the length that fits: L + 2 * spans <= seq_len + 1),
  as a prefix LM."""
  check_span_settings(noise_density, mean_span_length)
  length = len(tokens)
  while True:  # the longest prefix of `tokens` whose example fits
    spans = _spans_in(length, noise_density, mean_span_length)
    if length + 2 * spans <= seq_len + 1:
      break
    length -= 1
  noise = random_spans_noise_mask(length, noise_density, mean_span_length, rng)
  inputs, targets = corrupt_spans(np.asarray(tokens)[:length], noise, sentinel_ids)
  return as_prefix_lm(inputs, targets, seq_len, pad_id)


def prefix_lm_example(tokens_T1, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """A window of T + 1 tokens split at a uniform prefix length P in [1, T - 1]: bidirectional over
  the first P positions, loss on the next-token targets of positions P-1..T-1."""
  tokens_T1 = np.asarray(tokens_T1, np.int32)
  t = len(tokens_T1) - 1
  prefix = int(rng.integers(1, t))
  return as_prefix_lm(tokens_T1[:prefix], tokens_T1[prefix:], t, pad_id=0)


def _spans_in(length: int, noise_density: float, mean_span_length: float) -> int:
  return max(round(round(length * noise_density) / mean_span_length), 1)


def check_objective(train_config) -> None:
  """ValueError naming the train field that is out of range."""
  if train_config.objective not in OBJECTIVES:
    raise ValueError(f'train.objective={train_config.objective!r}: expected one of {OBJECTIVES}.')
  if train_config.objective == 'span_corruption':
    check_span_settings(train_config.noise_density, train_config.mean_span_length)
  if train_config.objective == 'mlm' and not 0 < train_config.mlm_rate < 1:
    raise ValueError(f'train.mlm_rate={train_config.mlm_rate}: must lie in (0, 1).')


def extra_tokens(train_config, seq_len: int) -> list[str]:
  """The special tokens `train.objective` needs: the mask token (mlm), or one sentinel per span a
  window of seq_len + 1 tokens can hold (span_corruption)."""
  if train_config.objective == 'mlm':
    return [MASK_TOKEN]
  if train_config.objective == 'span_corruption':
    spans = _spans_in(seq_len + 1, train_config.noise_density, train_config.mean_span_length)
    return [SENTINEL_TOKEN.format(k) for k in range(spans)]
  return []


@dataclasses.dataclass(frozen=True)
class Objective:
  """(window example, rng) -> the objective's example: {'inputs', 'targets' [T] int32, 'weights'
  [T] float32, 'in_prefix' [T] bool}, for grain's `random_map`."""
  objective: str
  extra_ids: tuple[int, ...]  # ids of `extra_tokens`, in order
  vocab_size: int  # random MLM replacements are drawn from [num_special, vocab_size)
  num_special: int
  pad_id: int
  mlm_rate: float = 0.15
  noise_density: float = 0.15
  mean_span_length: float = 3.0

  def __call__(self, example: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    window_T1 = np.concatenate([example['inputs'], example['targets'][-1:]])
    t = len(window_T1) - 1
    if self.objective == 'mlm':
      out = mlm_example(window_T1[:t], rng, self.extra_ids[0], self.vocab_size,
                        self.num_special, self.mlm_rate)
    elif self.objective == 'span_corruption':
      out = span_corruption_example(window_T1, rng, self.extra_ids, self.pad_id, t,
                                    self.noise_density, self.mean_span_length)
    elif self.objective == 'prefix_lm':
      out = prefix_lm_example(window_T1, rng)
    else:
      raise ValueError(f'train.objective={self.objective!r}: no transform (causal needs none).')
    prefix = out.pop('prefix')
    out['in_prefix'] = np.arange(t) < prefix
    return out
