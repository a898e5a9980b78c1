"""Synthetic tasks with a programmatic verifier, so that post-training's effect is measured.

A task makes problems (prompt, answer), judges a response to a prompt (1.0 right, 0.0 wrong: the
gold reward) and makes plausible wrong answers (the rejected side of preference pairs).
`write_task_files` writes everything a chain base -> SFT -> reward/DPO -> PPO/GRPO needs: plain
text for pretraining, SFT records, preference pairs, prompts and held-out evaluation files.
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
import re

from research.posttrain.records import write_records

# The files `write_task_files` writes into its directory.
PRETRAIN_DIR = 'pretrain'  # text documents of solved problems, for `experiments.train`
SFT_FILE = 'sft.jsonl'
PREFERENCES_FILE = 'preferences.jsonl'
PROMPTS_FILE = 'prompts.jsonl'
EVAL_SFT_FILE = 'eval_sft.jsonl'
EVAL_PREFERENCES_FILE = 'eval_preferences.jsonl'
EVAL_PROMPTS_FILE = 'eval_prompts.jsonl'


@dataclasses.dataclass(frozen=True)
class Addition:
  """'123+45=' -> '168': sums of two numbers of up to `digits` digits."""
  digits: int = 3
  pattern = re.compile(r'^(\d+)\+(\d+)=$')

  def problem(self, rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(10 ** self.digits), rng.randrange(10 ** self.digits)
    return f'{a}+{b}=', str(a + b)

  def answer(self, prompt: str) -> str:
    match = self.pattern.match(prompt)
    if match is None:
      raise ValueError(f'prompt {prompt!r} is not an addition problem "A+B="')
    return str(int(match.group(1)) + int(match.group(2)))

  def wrong(self, rng: random.Random, answer: str) -> str:
    """A near miss: one digit changed, or a digit dropped or repeated."""
    while True:
      digits, i = list(answer), rng.randrange(len(answer))
      kind = rng.random()
      if kind < 0.7:
        digits[i] = str((int(digits[i]) + rng.choice((1, 2, 8, 9))) % 10)
      elif kind < 0.85 and len(digits) > 1:
        del digits[i]
      else:
        digits.insert(i, digits[i])
      out = ''.join(digits).lstrip('0') or '0'
      if out != answer:
        return out


@dataclasses.dataclass(frozen=True)
class Sorting:
  """'sort 31415=' -> '11345': `length` digits in ascending order."""
  length: int = 5
  pattern = re.compile(r'^sort (\d+)=$')

  def problem(self, rng: random.Random) -> tuple[str, str]:
    digits = ''.join(str(rng.randrange(10)) for _ in range(self.length))
    return f'sort {digits}=', ''.join(sorted(digits))

  def answer(self, prompt: str) -> str:
    match = self.pattern.match(prompt)
    if match is None:
      raise ValueError(f'prompt {prompt!r} is not a sorting problem "sort DDDDD="')
    return ''.join(sorted(match.group(1)))

  def wrong(self, rng: random.Random, answer: str) -> str:
    """Two neighbours swapped, or one digit changed."""
    while True:
      digits, i = list(answer), rng.randrange(len(answer))
      if rng.random() < 0.5 and i + 1 < len(digits):
        digits[i], digits[i + 1] = digits[i + 1], digits[i]
      else:
        digits[i] = str((int(digits[i]) + rng.choice((1, 9))) % 10)
      out = ''.join(digits)
      if out != answer:
        return out


TASKS = {'addition': Addition(), 'sorting': Sorting()}


def get_task(name: str):
  if name not in TASKS:
    raise ValueError(f'posttrain.task={name!r}: unknown; expected one of {tuple(TASKS)}')
  return TASKS[name]


def verify(task, prompt: str, response: str) -> float:
  """The gold reward: 1.0 if `response` (surrounding spaces ignored) is the answer, else 0.0."""
  return float(response.strip() == task.answer(prompt))


def _problems(task, rng: random.Random, count: int, exclude: set) -> list[tuple[str, str]]:
  """`count` distinct problems whose prompts are not in `exclude` (which then holds them too)."""
  out = []
  for _ in range(100 * count):
    if len(out) == count:
      return out
    prompt, answer = task.problem(rng)
    if prompt not in exclude:
      exclude.add(prompt)
      out.append((prompt, answer))
  raise ValueError(f'{task}: could not draw {count} distinct problems; the task is too small')


def write_task_files(name: str, directory, seed: int = 0, pretrain_docs: int = 64,
                     lines_per_doc: int = 64, sft: int = 512, preferences: int = 512,
                     prompts: int = 512, evaluation: int = 256) -> pathlib.Path:
  """Writes the task's files (names above) into `directory`; every split has its own problems.

  Pretraining documents are lines 'prompt answer' (e.g. '12+7=19'); the evaluation problems
  appear in no training file.
  """
  task, rng, seen = get_task(name), random.Random(seed), set()
  directory = pathlib.Path(directory)
  (directory / PRETRAIN_DIR).mkdir(parents=True, exist_ok=True)
  held_out = _problems(task, rng, evaluation, seen)
  for doc in range(pretrain_docs):
    lines = [p + a for p, a in _problems(task, rng, lines_per_doc, seen)]
    (directory / PRETRAIN_DIR / f'doc{doc:04d}.txt').write_text('\n'.join(lines) + '\n')

  def sft_records(problems):
    return [{'prompt': p, 'response': a} for p, a in problems]

  def preference_records(problems):
    return [{'prompt': p, 'chosen': a, 'rejected': task.wrong(rng, a)} for p, a in problems]

  write_records(directory / SFT_FILE, sft_records(_problems(task, rng, sft, seen)))
  write_records(directory / PREFERENCES_FILE,
                preference_records(_problems(task, rng, preferences, seen)))
  write_records(directory / PROMPTS_FILE,
                [{'prompt': p} for p, _ in _problems(task, rng, prompts, seen)])
  write_records(directory / EVAL_SFT_FILE, sft_records(held_out))
  write_records(directory / EVAL_PREFERENCES_FILE, preference_records(held_out))
  write_records(directory / EVAL_PROMPTS_FILE, [{'prompt': p} for p, _ in held_out])
  return directory
