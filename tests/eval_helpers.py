"""A small trained run shared by the evaluation, interpretability and notebook tests, and local
lm-evaluation-harness tasks (YAML + JSONL files) that need no download."""

import json
import pathlib

from research.train.loop import train
from tests.train_helpers import tiny_config, write_corpus


def trained_run(tmp_path_factory) -> pathlib.Path:
  """A 2-layer run of 30 steps on the Markov corpus, trained once per test session: a second
  call finds the finished run (summary.json) and returns at once."""
  root = tmp_path_factory.getbasetemp() / 'shared_eval_run'
  config = tiny_config(write_corpus(root / 'text'), root / 'cache', num_steps=30,
                       checkpoint_every=30, eval_every=30)
  train(config, root / 'run', log=lambda *_: None)
  return root / 'run'


CHOICES = [
    {'context': 'the quick brown', 'choices': ['fox', 'sea', 'town'], 'label': 0},
    {'context': 'seven birds sing old', 'choices': ['songs', 'hills', 'dog'], 'label': 0},
    {'context': 'across green', 'choices': ['quiet', 'hills', 'the wind'], 'label': 1},
    {'context': 'a lazy', 'choices': ['bird', 'dog', 'fox jumps'], 'label': 1},
]
ROLLING = [
    {'text': 'the wind carries them far across green hills to a quiet town'},
    {'text': 'the quick brown fox jumps over a lazy dog while seven birds sing old songs of the '
             'sea and the wind carries them far across green hills to a quiet town and the quick '
             'brown fox jumps over a lazy dog'},
]
GENERATE = [
    {'prompt': 'the quick brown', 'answer': ' fox'},
    {'prompt': 'songs of the', 'answer': ' sea'},
    {'prompt': 'to a quiet', 'answer': ' town and'},
]
TASKS = {
    'local_choice': ('multiple_choice', CHOICES, """
doc_to_text: "{{context}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""),
    'local_rolling': ('loglikelihood_rolling', ROLLING, """
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""),
    'local_generate': ('generate_until', GENERATE, """
doc_to_text: "{{prompt}}"
doc_to_target: "{{answer}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
"""),
}


def write_tasks(directory) -> pathlib.Path:
  """One YAML and one JSONL per task of TASKS under `directory`; returns it (an include path)."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  for name, (output_type, docs, fields) in TASKS.items():
    data = directory / f'{name}.jsonl'
    data.write_text(''.join(json.dumps(d) + '\n' for d in docs))
    (directory / f'{name}.yaml').write_text(
        f'task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n'
        f'test_split: test\noutput_type: {output_type}\n{fields}')
  return directory
