"""Character-level tasks against tokenisation: spelling and letter counting by a model that reads
BPE tokens and by the same model reading characters, at equal compute.

`python -m experiments.character_tasks [--out=DIR] [--steps=1000] [--words=1000]`

Words: the `--words` most common lowercase words of the default corpus, a fifth held out, the rest
in the training records (`spell which: w h i c h`, `count h in which: 2`). Two runs of one
architecture, step count, batch and window (so equal training FLOPs outside the embedding) on the
same text: a byte-level BPE of 1,024 tokens fitted on the default corpus (common words are one
token) and the character tokenizer. Prints exact-match accuracy by task, word set and how many BPE
tokens the word is; writes DIR/character_tasks.json and DIR/character_tasks.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from experiments import synthetic_runs  # noqa: E402
from experiments.character_comparison import (MODEL, compare, plot, print_table,  # noqa: E402
                                              split_words)
from research.config import base_config  # noqa: E402
from research.data import corpus  # noqa: E402
from research.evals import characters  # noqa: E402

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('character_tasks'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps of each model.')
_WORDS = flags.DEFINE_integer('words', 1000, 'Most common words used (a fifth held out).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _WORDS.value < 10:
    raise app.UsageError(f'--words={_WORDS.value}: need at least 10 (a fifth is held out)')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  books = corpus.load_split(base_config().data, 'train')
  words = characters.common_words((books[i] for i in range(min(60, len(books)))), _WORDS.value)
  trained, held_out = split_words(words)
  bpe = synthetic_runs.natural_text_tokenizer(out.parent / 'bpe1024.json', 1024)
  results = compare(out, trained, held_out, bpe, MODEL, _STEPS.value)
  print_table(results)
  plot(results, out / 'character_tasks.png',
       f'character-level tasks: one model, {_STEPS.value} steps each, BPE vs characters')
  synthetic_runs.write_results(out / 'character_tasks.json', {
      'model': MODEL, 'steps': _STEPS.value, 'words': len(words), 'held_out': len(held_out),
      **results, 'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
