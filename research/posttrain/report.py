"""The measurements of a post-training chain directory (task/, base/, sft/, reward/, dpo/, ppo/,
grpo/, overopt_beta*/), as `experiments.posttrain_report` lays it out: the table of verifier
accuracy and KL to the SFT model per model, and the over-optimisation curves.
"""

from __future__ import annotations

import pathlib

import ml_collections

from research import run_dir
from research.posttrain import packing
from research.posttrain import sources
from research.posttrain.chat import ChatTemplate
from research.posttrain.evaluation import evaluate_policy
from research.posttrain.records import read_records
from research.posttrain.tasks import get_task

MODELS = ('base', 'sft', 'dpo', 'ppo', 'grpo')  # the rows of the table, in chain order
OVEROPT_PREFIX = 'overopt_beta'  # + beta: PPO runs against the reward model


def overopt_dir(workdir, beta: float) -> pathlib.Path:
  return pathlib.Path(workdir) / f'{OVEROPT_PREFIX}{beta:g}'


def evaluate_base(base_dir, sft_dir) -> dict:
  """The base's held-out metrics as the SFT run measures its own: the SFT run's evaluation
  prompts and template, KL to the SFT model on the base's samples."""
  p = ml_collections.ConfigDict(run_dir.read_config(sft_dir)).posttrain
  sft = sources.as_policy(sources.read_source(str(sft_dir), 'sft'), 'sft')
  base = sources.as_policy(sources.read_source(str(base_dir), 'base'), 'base')
  template = ChatTemplate.of(sft.tokenizer)
  records = read_records(p.eval_file, 'sft', 'posttrain.eval_file')[:p.eval_prompts]
  rows = packing.prompt_rows(template, records, p.seq_len - p.max_new_tokens)
  return evaluate_policy(base.model_config, base.params, template, rows,
                         [r['prompt'] for r in records], p.max_new_tokens, get_task(p.task),
                         reference_params=sft.params)


def stage_table(workdir) -> list[dict]:
  """One row per model of the chain: greedy and sampled verifier accuracy on the held-out
  prompts, KL(model || SFT) per response, wall time and steps of its run."""
  workdir = pathlib.Path(workdir)
  rows = []
  for name in MODELS:
    summary = run_dir.read_summary(workdir / name)
    if summary is None:
      continue
    metrics = evaluate_base(workdir / 'base', workdir / 'sft') if name == 'base' else summary
    rows.append({'model': name, 'accuracy': metrics['eval_accuracy'],
                 'sampled_accuracy': metrics['eval_sampled_accuracy'],
                 'kl_to_sft': 0.0 if name == 'sft' else metrics['eval_kl'],
                 'wall_time_s': summary['wall_time_s'], 'steps': summary['step']})
  return rows


def overoptimization_curves(workdir) -> dict:
  """beta -> held-out points {'step', 'kl', 'proxy', 'gold'} of each finished overopt_beta* run."""
  curves = {}
  for directory in sorted(pathlib.Path(workdir).glob(f'{OVEROPT_PREFIX}*')):
    if run_dir.read_summary(directory) is None:
      continue
    beta = run_dir.read_config(directory)['posttrain']['beta']
    curves[beta] = [{'step': r['step'], 'kl': r['eval_kl'], 'proxy': r['eval_proxy_score'],
                     'gold': r['eval_sampled_accuracy']}
                    for r in run_dir.metric_records(directory) if 'eval_proxy_score' in r]
  return curves


def markdown_table(rows: list[dict]) -> str:
  lines = ['| model | accuracy (greedy) | accuracy (sampled) | KL to SFT (nats) | wall time (s) | '
           'steps |', '|---|---|---|---|---|---|']
  lines += [f'| {r["model"]} | {r["accuracy"]:.3f} | {r["sampled_accuracy"]:.3f} | '
            f'{r["kl_to_sft"]:.3f} | {r["wall_time_s"]:.0f} | {r["steps"]} |' for r in rows]
  return '\n'.join(lines)
