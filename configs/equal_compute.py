"""The model and budget every equal-compute comparison of issue 16 shares: configs/tiny.py's
shape (4 layers, d_model 128, vocabulary 4096 rows whatever the tokenizer fills), batch 16 x 128
tokens, NUM_STEPS steps, so every run does the same FLOPs per step and in all.

The sweeps `tokenizers.py`, `objectives.py` and `dedup.py` start from `base()`;
`python -m experiments.equal_compute` runs them and prints their tables.
"""

import ast
import pathlib

from research.config import load_python_file

NUM_STEPS = 150


def apply_overrides(c, overrides=()):
  """Sets each 'section.field=value' of `overrides` (value a Python literal, else a string);
  a ValueError names a field the config lacks."""
  for item in overrides:
    name, eq, text = item.partition('=')
    *path, field = name.split('.')
    section = c
    try:
      for part in path:
        section = section[part]
    except (KeyError, AttributeError):
      section = None
    if not eq or section is None or field not in section:
      raise ValueError(f'override {item!r}: expected section.field=value for a field of the '
                       'config')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    section[field] = value
  return c


def base(num_steps: int = NUM_STEPS, overrides=()):
  """The shared config; `overrides` ('model.d_model=32', ...) shrink it further for tests."""
  c = load_python_file(pathlib.Path(__file__).with_name('tiny.py')).get_config()
  c.data.corpus = 'default'
  c.data.tokenizer_train_chars = 5_000_000  # as experiments.tokenizer_report's table
  c.train.update(batch_size=16, num_steps=num_steps, learning_rate=3e-3,
                 warmup_steps=max(1, num_steps // 10), log_every=25, eval_every=100_000,
                 checkpoint_every=100_000)  # evaluate once, at the end
  return apply_overrides(c, overrides)


def get_config():
  """The shared config at its default budget, as a preset: `experiments.train
  --config=configs/equal_compute.py` trains one run of the comparisons' model (BPE, causal)."""
  return base()
