"""Character-level tasks, spelling a word and counting one of its letters, measured against how
the word is tokenised: a model that reads a word as one token never sees its letters.

Records are one per line: `spell which: w h i c h` and `count h in which: 2`. The control model
reads characters: `character_tokenizer()` is a byte-level BPE with no merges, one token per byte
(per character for ASCII), built with the same tokenizer code as every run's.
"""

from __future__ import annotations

import collections

import ml_collections
import numpy as np
from tokenizers import Tokenizer

from research.data import tokenizer as tokenizer_lib
from research.evals.scoring import score_texts

TASKS = ('spell', 'count')


def character_tokenizer() -> Tokenizer:
  """256 byte tokens and the 3 special tokens, no merges: text is read one byte at a time."""
  minimum = 256 + len(tokenizer_lib.SPECIAL_TOKENS)
  return tokenizer_lib.train_tokenizer(['-'], vocab_size=minimum, max_chars=1)


def example(task: str, word: str, rng: np.random.Generator) -> tuple[str, str]:
  """(prompt, answer) of one task on `word`: the letters spaced out, or one letter's count
  (a letter of the word two times in three, else any letter)."""
  if task == 'spell':
    return f'spell {word}:', ' ' + ' '.join(word)
  if task == 'count':
    letters = sorted(set(word)) if rng.random() < 2 / 3 else list('abcdefghijklmnopqrstuvwxyz')
    letter = str(rng.choice(letters))
    return f'count {letter} in {word}:', f' {word.count(letter)}'
  raise ValueError(f'task={task!r}: expected one of {TASKS}')


def documents(words, num_documents: int, records_per_document: int, seed: int = 0) -> list[str]:
  """Training text: lines of spelling and counting records on words drawn from `words`."""
  rng = np.random.default_rng(seed)
  words = list(words)
  docs = []
  for _ in range(num_documents):
    lines = []
    for _ in range(records_per_document):
      prompt, answer = example(str(rng.choice(TASKS)), str(rng.choice(words)), rng)
      lines.append(prompt + answer)
    docs.append('\n'.join(lines))
  return docs


def common_words(texts, count: int, min_len: int = 3, max_len: int = 9) -> list[str]:
  """The `count` most frequent lowercase alphabetic words of `texts` (ties by the word)."""
  counter = collections.Counter()
  for text in texts:
    counter.update(w for w in text.split() if w.isalpha() and w.islower() and w.isascii()
                   and min_len <= len(w) <= max_len)
  return [w for w, _ in sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:count]]


def tokens_per_word(tokenizer: Tokenizer, words) -> np.ndarray:
  """How many tokens each word is as the records show it (after a space)."""
  return np.array([len(ids) for ids in
                   tokenizer_lib.encode_texts(tokenizer, [' ' + w for w in words])])


def character_tasks(model_config: ml_collections.ConfigDict, params, tokenizer: Tokenizer,
                    words, seed: int = 0, batch_size: int = 32) -> dict:
  """Greedy exact match of each task on each word -> {task: bool [W]}, with 'words'."""
  rng = np.random.default_rng(seed)
  out = {'words': list(words)}
  for task in TASKS:
    prompts, answers = zip(*(example(task, w, rng) for w in words))
    prompts = ['\n' + p for p in prompts]  # a record starts a line, as in training
    out[task] = score_texts(model_config, params, tokenizer, prompts, answers, batch_size).greedy
  return out


def accuracy_by_token_count(correct_W, counts_W, cap: int = 3) -> dict:
  """Mean of `correct` grouped by token count (counts >= cap pooled as 'cap+')."""
  correct_W, counts_W = np.asarray(correct_W, float), np.minimum(np.asarray(counts_W), cap)
  return {(f'{n}+' if n == cap else str(n)): (float(correct_W[counts_W == n].mean()),
                                             int((counts_W == n).sum()))
          for n in range(1, cap + 1) if (counts_W == n).any()}
