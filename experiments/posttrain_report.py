"""The post-training chain on a synthetic task, measured end to end:

  python -m experiments.posttrain_report --workdir=runs/posttrain

writes the task (DIR/task), pretrains a base on it (DIR/base, configs/posttrain/base.py), then runs
SFT, a reward model, DPO, PPO and GRPO (configs/posttrain/<stage>.py), and PPO against the learned
reward model for several beta (DIR/overopt_beta*). It prints the table of verifier accuracy, KL to
the SFT model and wall time per model, and writes DIR/report/: report.json, table.md and the
figures stages.png, accuracy.png, overoptimization.png. Every run resumes, and a finished one is
skipped, so rerunning the command continues where it stopped. `--preset=test` is a tiny version
for the tests.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from research import run_dir
from research.config import load_python_file
from research.posttrain import plots
from research.posttrain import report
from research.posttrain import tasks
from research.posttrain.run import posttrain
from research.train.loop import train

CONFIGS = pathlib.Path(__file__).parents[1] / 'configs' / 'posttrain'
STAGES = ('sft', 'reward', 'dpo', 'ppo', 'grpo')
REPORT_DIR, REPORT_FILE, TABLE_FILE = 'report', 'report.json', 'table.md'
PRESETS = {
    # ~minutes on 2 CPU cores: the measurements of the docs.
    'cpu': {'task': dict(pretrain_docs=64, lines_per_doc=64, sft=512, preferences=512,
                         prompts=512, evaluation=256),
            'betas': (0.0, 0.01, 0.05, 0.2), 'overrides': {'overopt': {'train.num_steps': 60}}},
    # seconds: what the tests run.
    'test': {'task': dict(pretrain_docs=24, lines_per_doc=16, sft=32, preferences=32, prompts=32,
                          evaluation=16),
             'betas': (0.0,),
             'overrides': {
                 'base': {'model.d_model': 16, 'model.num_layers': 1, 'model.num_heads': 2,
                          'model.num_kv_heads': 2, 'model.d_ff': 32, 'model.max_seq_len': 32,
                          'data.seq_len': 32, 'data.validation_fraction': 0.2,
                          'data.eval_batches': 1, 'train.batch_size': 8, 'train.num_steps': 6,
                          'train.log_every': 2, 'train.eval_every': 6,
                          'train.checkpoint_every': 6},
                 'all': {'train.batch_size': 8, 'train.num_steps': 4, 'train.checkpoint_every': 2,
                         'train.eval_every': 4, 'posttrain.eval_prompts': 8,
                         'posttrain.max_new_tokens': 6, 'posttrain.num_minibatches': 2},
                 'grpo': {'train.batch_size': 4, 'posttrain.group_size': 2},
             }},
}



def _override(config, overrides: dict):
  for dotted, value in overrides.items():
    section, field = dotted.split('.')
    config[section][field] = value
  return config


def stage_config(name: str, workdir, preset: str):
  """configs/posttrain/<name>.py for the chain in `workdir`, with the preset's overrides."""
  config = load_python_file(CONFIGS / f'{name}.py').get_config(str(workdir))
  overrides = PRESETS[preset]['overrides']
  if name != 'base':
    _override(config, overrides.get('all', {}))
  return _override(config, overrides.get(name, {}))


def run_chain(workdir, preset: str = 'cpu', log=print) -> None:
  """Every run of the chain, in order; finished ones are skipped, interrupted ones resumed."""
  workdir = pathlib.Path(workdir)
  base = stage_config('base', workdir, preset)
  task_dir = workdir / 'task'
  if not (task_dir / tasks.EVAL_PROMPTS_FILE).exists():
    task = load_python_file(CONFIGS / 'base.py').TASK
    tasks.write_task_files(task, task_dir, **PRESETS[preset]['task'])
  start = time.perf_counter()
  train(base, workdir / 'base', log=lambda *_: None)
  log(f'base: {time.perf_counter() - start:.0f} s')
  for name in STAGES:
    start = time.perf_counter()
    posttrain(stage_config(name, workdir, preset), workdir / name, log=lambda *_: None)
    log(f'{name}: {time.perf_counter() - start:.0f} s')
  for beta in PRESETS[preset]['betas']:
    config = _override(stage_config('ppo', workdir, preset),
                       PRESETS[preset]['overrides'].get('overopt', {}))
    config.posttrain.update(reward='model', reward_from=str(workdir / 'reward'), beta=beta)
    start = time.perf_counter()
    posttrain(config, report.overopt_dir(workdir, beta), log=lambda *_: None)
    log(f'ppo against the reward model, beta={beta:g}: {time.perf_counter() - start:.0f} s')


def write_report(workdir) -> dict:
  """The table, the curves and the figures of a finished chain, into DIR/report."""
  workdir = pathlib.Path(workdir)
  out = workdir / REPORT_DIR
  out.mkdir(parents=True, exist_ok=True)
  rows = report.stage_table(workdir)
  curves = report.overoptimization_curves(workdir)
  plots.stage_curves({name: workdir / name for name in STAGES}, out / 'stages.png')
  plots.accuracy_by_stage(rows, out / 'accuracy.png')
  plots.overoptimization(curves, out / 'overoptimization.png')
  result = {'table': rows, 'overoptimization': {f'{b:g}': c for b, c in curves.items()}}
  run_dir.write_text_atomically(out / TABLE_FILE, report.markdown_table(rows) + '\n')
  run_dir.write_json_atomically(out / REPORT_FILE, result)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  workdir = flags.FLAGS.workdir
  run_chain(workdir, flags.FLAGS.preset)
  result = write_report(workdir)
  print(report.markdown_table(result['table']))
  for beta, points in result['overoptimization'].items():
    print(f'beta={beta}: ' + ', '.join(f'KL {p["kl"]:.2f}: proxy {p["proxy"]:.2f} gold '
                                        f'{p["gold"]:.2f}' for p in points))
  print(f'figures and report.json in {pathlib.Path(workdir) / REPORT_DIR}')


if __name__ == '__main__':  # flags only here: config files import this module for its presets
  flags.DEFINE_string('workdir', None, 'The chain directory (created; resumed).')
  flags.DEFINE_enum('preset', 'cpu', list(PRESETS), 'Sizes: cpu (the docs), test (tiny).')
  flags.mark_flag_as_required('workdir')
  app.run(main)
