"""What cleaning removes from a corpus: `python -m experiments.data_quality_report --out=DIR`.

Runs the quality rules, exact dedup and near dedup (research/data/clean.py) on the train split of
`--config`'s corpus (default: base_config(), the default corpus), each stage on what the earlier
ones kept, and prints the counts: per stage, per quality rule, and the LSH candidates the exact
Jaccard check turned down. Writes DIR/data_quality_report.json (kept ids left out).
"""

import time

from absl import app
from absl import flags

from research import run_dir
from research.config import base_config, load_config_file
from research.data import clean
from research.data import corpus

_CONFIG = flags.DEFINE_string('config', None, 'A config file (default: base_config()).')
_OUT = flags.DEFINE_string('out', None, 'Where the report goes.')
flags.mark_flag_as_required('out')


def main(argv):
  del argv
  config = load_config_file(_CONFIG.value) if _CONFIG.value else base_config()
  config.data.update(quality_filter=True, exact_dedup=True, near_dedup=True)
  source = corpus.load_split(config.data, 'train')
  start = time.time()
  record = clean.run_stages(source, config.data)
  seconds = time.time() - start
  kept = len(record.pop('kept'))
  print(f'{source.name}: {record["documents"]} documents, {kept} kept ({seconds:.0f} s)')
  for stage, count in record['removed'].items():
    print(f'  {stage:<16} removed {count}')
  for rule, count in sorted(record['quality_reasons'].items()):
    print(f'    rule {rule:<22} broken by {count}')
  print(f'  LSH candidates turned down by the exact Jaccard check: '
        f'{record["lsh_candidates_rejected"]}')
  record.update(kept=kept, seconds=seconds, source=source.name)
  out = run_dir.as_path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  run_dir.write_json_atomically(out / 'data_quality_report.json', record)
  print(f'wrote {out / "data_quality_report.json"}')


if __name__ == '__main__':
  app.run(main)
