"""Lost in the middle (Liu et al. 2023) on a model trained here: key-value retrieval accuracy
against where the answer sits in the context.

`python -m experiments.lost_in_the_middle [--out=DIR] [--steps=1000] [--pairs=16]`

Trains a 3-layer RoPE transformer on a character tokenizer over records `a=7 c=2 ... ? c=2 ...`
(`--pairs` pairs, 4 queries; the queried pairs drawn uniformly, so training favours no depth),
then asks one query per prompt with the answer's pair at each depth 0 (first) .. pairs - 1 (last,
next to the question). Prints accuracy and answer log-probability per depth; writes
DIR/lost_in_the_middle.json and DIR/lost_in_the_middle.png.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from experiments import synthetic_runs  # noqa: E402
from research.evals import characters, retrieval  # noqa: E402
from research.inference.run import load_run  # noqa: E402

_OUT = flags.DEFINE_string('out', synthetic_runs.default_out('lost_in_the_middle'), 'Output dir.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps.')
_PROMPTS = flags.DEFINE_integer('prompts_per_depth', 100, 'Probe prompts per depth.')
_PAIRS = flags.DEFINE_integer('pairs', 16, 'Key-value pairs per record (1 to 26).')
QUERIES = 4
MODEL = dict(d_model=64, num_layers=3, num_heads=4, num_kv_heads=4, d_ff=256, position='rope',
             norm='rmsnorm', mlp='swiglu', use_bias=False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  start = time.perf_counter()
  pairs = _PAIRS.value
  texts = retrieval.documents(300, 40, pairs, QUERIES, seed=0)
  # Checkpoints every 100 steps: a loss-spike rollback then restores a nearby step, not the
  # initial parameters (whose loss the spike guard, holding later losses, calls a spike again).
  _, run, summary = synthetic_runs.train_on_texts(out, texts, characters.character_tokenizer(),
                                                  MODEL, _STEPS.value,
                                                  checkpoint_every=min(100, _STEPS.value))
  model_config, params, tokenizer, _ = load_run(run)
  result = retrieval.lost_in_the_middle(model_config, params, tokenizer, pairs, _PROMPTS.value,
                                        seed=1)
  print(f'{"depth":>5} {"accuracy":>8} {"log p(answer)":>13}')
  for d, acc, lp in zip(result['depth'], result['accuracy'], result['logprob']):
    print(f'{d:>5} {acc:>8.3f} {lp:>13.3f}')
  fig, ax = plt.subplots(figsize=(6, 3.4))
  half_width = 1.96 * np.sqrt(result['accuracy'] * (1 - result['accuracy']) / _PROMPTS.value)
  ax.errorbar(result['depth'], result['accuracy'], yerr=half_width, fmt='o-', capsize=2)
  ax.axhline(1 / len(retrieval.VALUES), color='grey', ls=':', label='chance (1 in 10)')
  ax.set_xlabel(f'depth of the answer (0: first of {pairs} pairs, {pairs - 1}: next to the query)')
  ax.set_ylabel('retrieval accuracy')
  ax.set_ylim(0, 1.02)
  ax.legend()
  ax.set_title(f'key-value retrieval against depth ({_STEPS.value} steps, '
               f'{_PROMPTS.value} prompts per depth, 95% intervals)', fontsize=9)
  out.mkdir(parents=True, exist_ok=True)
  fig.savefig(out / 'lost_in_the_middle.png', dpi=110, bbox_inches='tight')
  synthetic_runs.write_results(out / 'lost_in_the_middle.json', {
      'model': MODEL, 'steps': _STEPS.value, 'pairs': pairs, 'queries': QUERIES,
      'final_eval_loss': summary['final_eval_loss'], **result,
      'wall_time_s': time.perf_counter() - start})
  print(f'wall time {time.perf_counter() - start:.0f} s (shared machine)')


if __name__ == '__main__':
  app.run(main)
