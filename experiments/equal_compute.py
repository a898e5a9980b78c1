"""Tokenizers, objectives and deduplication compared at equal compute (issue 16).

  python -m experiments.equal_compute --workdir=runs/equal
      [--comparisons=tokenizers,objectives,dedup] [--num_steps=150]

Runs the sweeps configs/sweeps/{tokenizers,objectives,dedup}.py (one subdirectory of --workdir
each; rerunning skips finished runs, like experiments.sweep with the same files), then prints one
table per comparison, adds them to DIR/equal_compute.json (keeping comparisons run before) and
plots every comparison there in DIR/equal_compute.png.
Every run has the same model, batch, row length and steps (configs/equal_compute.py), so
the same training FLOPs. The metric is validation bits per byte: for the objectives, each model
scored as a causal LM on the same validation windows (its own eval loss is over other targets).
"""

import json
import math
import pathlib
import sys
import time

from absl import app
from absl import flags

from research import run_dir
from research.config import load_python_file

COMPARISONS = ('tokenizers', 'objectives', 'dedup')
SWEEPS = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'sweeps'

_WORKDIR = flags.DEFINE_string('workdir', None, 'One subdirectory per comparison goes here.')
_COMPARISONS = flags.DEFINE_list('comparisons', list(COMPARISONS), 'Which to run, of '
                                 f'{", ".join(COMPARISONS)}.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', None, 'Steps of every run (default: '
                                  'configs/equal_compute.py NUM_STEPS).')
_TOKENIZERS = flags.DEFINE_list('tokenizers', None, 'Tokenizer kinds to compare (default: all '
                                'of configs/sweeps/tokenizers.py).')
_OBJECTIVES = flags.DEFINE_list('objectives', None, 'Objectives to compare (default: all of '
                                'configs/sweeps/objectives.py).')
_SET = flags.DEFINE_list('set', [], "Config overrides for every run, 'section.field=value' "
                         "(e.g. model.d_model=32,data.text_dir=DIR): a smaller setting.")
flags.mark_flag_as_required('workdir')


def causal_bits_per_byte(row: dict) -> dict:
  """The run's final params scored as a causal LM on its validation windows (cached in
  RUN/evals/causal_bits_per_byte_step<N>.json)."""
  from research.evals.run import evals_path, in_domain_bits_per_byte
  path = evals_path(row['run_dir'], 'causal_bits_per_byte', int(row['step']))
  cached = run_dir.read_json(path)
  if cached is not None:
    return cached
  result = in_domain_bits_per_byte(row['run_dir'], int(row['step']))
  path.parent.mkdir(parents=True, exist_ok=True)
  run_dir.write_json_atomically(path, result)
  return result


def _common(row: dict) -> dict:
  return {'label': row['label'], 'status': row['status'], 'steps': row['step'],
          'train_tokens': row['D'], 'eval_loss': row['final_eval_loss'],
          'eval_bits_per_byte': row['final_eval_bits_per_byte'], 'wall_time_s': row['wall_time_s']}


def tokenizer_rows(rows: list[dict]) -> list[dict]:
  """Bytes per token on validation follow from the eval loss and bits per byte; the text bytes
  trained on are the tokens trained times that."""
  out = []
  for row in rows:
    r = _common(row)
    r['tokenizer'] = row['data.tokenizer']
    bpb, loss = r['eval_bits_per_byte'], r['eval_loss']
    r['bytes_per_token'] = loss / (bpb * math.log(2)) if bpb and loss else float('nan')
    r['train_text_mb'] = r['train_tokens'] * r['bytes_per_token'] / 1e6
    out.append(r)
  return out


def objective_rows(rows: list[dict]) -> list[dict]:
  out = []
  for row in rows:
    r = _common(row)
    r['objective'] = row['train.objective']
    causal = causal_bits_per_byte(row) if row['status'] == 'completed' else {}
    r['causal_bits_per_byte'] = causal.get('bits_per_byte', float('nan'))
    r['causal_nats_per_token'] = causal.get('nats_per_token', float('nan'))
    out.append(r)
  return out


def dedup_rows(rows: list[dict], injected: dict) -> list[dict]:
  """Adds what cleaning removed (from the counts written beside the dataset)."""
  import ml_collections
  from research.data import clean
  from research.data import injected_duplicates
  out = []
  for row in rows:
    r = _common(row)
    data = ml_collections.ConfigDict(run_dir.read_config(row['run_dir'])['data'])
    record = clean.train_record(data) or {'removed': {}, 'documents': None}
    r['train_documents'] = record['documents'] or injected['train_documents'] + injected['injected']
    r['removed_exact'] = record['removed'].get('exact_dedup', 0)
    r['removed_near'] = record['removed'].get('near_dedup', 0)
    r['lsh_candidates_rejected'] = record.get('lsh_candidates_rejected', 0)
    r['injected'] = injected['injected']
    kept = clean.train_split(data, log=lambda _: None)
    r['kept_documents'] = len(kept)
    r.update(injected_duplicates.audit(kept, data.text_dir, injected))
    out.append(r)
  return out


def run_comparison(name: str, workdir: pathlib.Path, num_steps, overrides=(),
                   choices=None) -> list[dict]:
  """Runs (or finishes) the comparison's sweep in workdir/name; -> its table rows."""
  from research.sweeps import runner
  module = load_python_file(SWEEPS / f'{name}.py')
  kwargs = {'tokenizers': 'kinds', 'objectives': 'names'}
  extra = {kwargs[name]: tuple(choices)} if choices and name in kwargs else {}
  sweep = module.get_sweep(num_steps=num_steps, overrides=tuple(overrides), **extra)
  start = time.time()
  order = [label for label, _ in sweep]
  rows = sorted(runner.run_sweep(sweep, workdir / name, sweep_name=name),
                key=lambda row: order.index(row['label']))
  print(f'{name}: sweep {time.time() - start:.0f} s')
  if name == 'tokenizers':
    return tokenizer_rows(rows)
  if name == 'objectives':
    return objective_rows(rows)
  from research.data import injected_duplicates
  text_dir = sweep[0][1].data.text_dir
  injected = json.loads((pathlib.Path(text_dir) / injected_duplicates.RECORD_FILE).read_text())
  return dedup_rows(rows, injected)


COLUMNS = {
    'tokenizers': ('tokenizer', 'bytes_per_token', 'train_text_mb', 'eval_loss',
                   'eval_bits_per_byte', 'wall_time_s'),
    'objectives': ('objective', 'eval_loss', 'eval_bits_per_byte', 'causal_nats_per_token',
                   'causal_bits_per_byte', 'wall_time_s'),
    'dedup': ('label', 'train_documents', 'kept_documents', 'removed_exact', 'removed_near',
              'lsh_candidates_rejected', 'duplicates_left', 'false_positives', 'eval_loss',
              'eval_bits_per_byte', 'wall_time_s'),
}
METRIC = {'tokenizers': 'eval_bits_per_byte', 'objectives': 'causal_bits_per_byte',
          'dedup': 'eval_bits_per_byte'}


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.0f}' if abs(value) >= 100 else f'{value:.4f}'
  return str(value)


def markdown_table(name: str, rows: list[dict]) -> str:
  columns = COLUMNS[name]
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_cell(r[c]) for c in columns) + ' |' for r in rows]
  return '\n'.join(lines)


def plot(results: dict, path: pathlib.Path) -> None:
  """One bar panel per comparison: its validation bits per byte."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(4.2 * len(results), 3.6), layout='constrained')
  for i, (name, rows) in enumerate(results.items()):
    ax = fig.add_subplot(1, len(results), i + 1)
    key = {'tokenizers': 'tokenizer', 'objectives': 'objective', 'dedup': 'label'}[name]
    labels = [str(r[key]).replace('sentencepiece_', 'sp_').replace('dedup=', '') for r in rows]
    values = [r[METRIC[name]] for r in rows]
    bars = ax.bar(range(len(rows)), values, color='tab:blue')
    ax.bar_label(bars, fmt='%.3f', fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha='right')
    ax.set_ylabel('validation bits per byte' + (' (causal)' if name == 'objectives' else ''))
    ax.set_title(name)
    finite = [v for v in values if math.isfinite(v)]
    if finite:
      ax.set_ylim(0.9 * min(finite), 1.05 * max(finite))
  FigureCanvasAgg(fig).print_png(str(path))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  unknown = [c for c in _COMPARISONS.value if c not in COMPARISONS]
  if unknown or not _COMPARISONS.value:
    print(f'error: --comparisons={",".join(_COMPARISONS.value)}: expected some of '
          f'{", ".join(COMPARISONS)}', file=sys.stderr)
    sys.exit(2)
  if _NUM_STEPS.value is not None and _NUM_STEPS.value < 1:
    print(f'error: --num_steps={_NUM_STEPS.value}: must be at least 1', file=sys.stderr)
    sys.exit(2)
  workdir = run_dir.absolute(_WORKDIR.value)
  results = {}
  choices = {'tokenizers': _TOKENIZERS.value, 'objectives': _OBJECTIVES.value}
  for name in _COMPARISONS.value:
    try:
      results[name] = run_comparison(name, workdir, _NUM_STEPS.value, _SET.value,
                                     choices.get(name))
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    print(f'\n## {name}\n\n{markdown_table(name, results[name])}\n')
  earlier = run_dir.read_json(workdir / 'equal_compute.json') or {}
  everything = {name: results.get(name, earlier.get(name)) for name in COMPARISONS
                if name in results or name in earlier}
  run_dir.write_json_atomically(workdir / 'equal_compute.json', everything)
  plot(everything, workdir / 'equal_compute.png')
  print(f'wrote {workdir / "equal_compute.json"} and {workdir / "equal_compute.png"}')
  bad = [r['label'] for rows in results.values() for r in rows if r['status'] != 'completed']
  if bad:
    print(f'not completed: {", ".join(bad)}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
