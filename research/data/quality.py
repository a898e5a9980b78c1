"""Heuristic document-quality filters of Rae et al. 2021 (Gopher, appendix A.1.1).

A document is kept when its word count and mean word length lie in range, few of its words are
symbols (`#`, `...`), most of its words hold a letter, and it does not repeat itself: duplicate
lines, the character share of its most frequent 2-4-grams, and the share of characters inside
repeated 5-10-grams all stay under their thresholds. `reasons(text, config)` names every rule a
document breaks; `data.quality` (research/config.py) holds the thresholds.
"""

from __future__ import annotations

import collections
import re

import ml_collections

_WORD = re.compile(r'\S+')
_ALPHA = re.compile(r'[^\W\d_]')  # a letter of any script
TOP_NGRAMS = {2: 0.20, 3: 0.18, 4: 0.16}  # n -> most frequent n-gram's max share of characters
DUPLICATE_NGRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}  # n -> max share


def check_config(config: ml_collections.ConfigDict, prefix: str = 'data.quality.') -> None:
  """ValueError naming the field when a threshold is out of range."""
  for name in ('max_symbol_ratio', 'min_alpha_word_ratio', 'max_duplicate_line_fraction',
               'max_duplicate_line_char_fraction'):
    if not 0 <= config[name] <= 1:
      raise ValueError(f'{prefix}{name}={config[name]}: must lie in [0, 1].')
  if not 0 <= config.min_words <= config.max_words:
    raise ValueError(f'{prefix}min_words={config.min_words}, {prefix}max_words='
                     f'{config.max_words}: need 0 <= min_words <= max_words.')
  if not 0 <= config.min_mean_word_length <= config.max_mean_word_length:
    raise ValueError(f'{prefix}min_mean_word_length={config.min_mean_word_length}: need 0 <= '
                     'min_mean_word_length <= max_mean_word_length.')


def _top_ngram_fraction(words: list[str], n: int) -> float:
  """Characters of the most frequent n-gram (all its occurrences) over all word characters."""
  counts = collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
  if not counts:
    return 0.0
  gram, count = counts.most_common(1)[0]
  return count * sum(len(w) for w in gram) / max(sum(len(w) for w in words), 1)


def _duplicate_ngram_fraction(words: list[str], n: int) -> float:
  """Characters of words covered by an n-gram that occurs more than once, over all."""
  grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
  counts = collections.Counter(grams)
  covered = [False] * len(words)
  for i, gram in enumerate(grams):
    if counts[gram] > 1:
      covered[i:i + n] = [True] * n
  return sum(len(w) for w, c in zip(words, covered) if c) / max(sum(len(w) for w in words), 1)


def reasons(text: str, config: ml_collections.ConfigDict) -> list[str]:
  """The names of the rules `text` breaks (empty: keep it)."""
  words = _WORD.findall(text)
  out = []
  if not config.min_words <= len(words) <= config.max_words:
    out.append('word_count')
  if not words:
    return out
  mean_length = sum(len(w) for w in words) / len(words)
  if not config.min_mean_word_length <= mean_length <= config.max_mean_word_length:
    out.append('mean_word_length')
  symbols = sum(w.count('#') + w.count('...') + w.count('\u2026') for w in words)
  if symbols / len(words) > config.max_symbol_ratio:
    out.append('symbol_ratio')
  if sum(bool(_ALPHA.search(w)) for w in words) / len(words) < config.min_alpha_word_ratio:
    out.append('alpha_word_ratio')
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  seen, duplicate_lines, duplicate_chars = set(), 0, 0
  for line in lines:
    if line in seen:
      duplicate_lines += 1
      duplicate_chars += len(line)
    seen.add(line)
  if lines and duplicate_lines / len(lines) > config.max_duplicate_line_fraction:
    out.append('duplicate_lines')
  if lines and duplicate_chars / sum(map(len, lines)) > config.max_duplicate_line_char_fraction:
    out.append('duplicate_line_chars')
  if any(_top_ngram_fraction(words, n) > limit for n, limit in TOP_NGRAMS.items()):
    out.append('top_ngram')
  if any(_duplicate_ngram_fraction(words, n) > limit for n, limit in DUPLICATE_NGRAMS.items()):
    out.append('duplicate_ngram')
  return out
