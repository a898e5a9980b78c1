"""Compare tokenizer kinds on a corpus: `python -m experiments.tokenizer_report --out=DIR`.

Fits each `data.tokenizer` kind on the train split (`--config`'s data section; `--vocab_size`,
`--train_chars`), then measures on the validation split: bytes per token, the share of the
vocabulary used, and the share of documents that decode back exactly. Prints a table and writes
DIR/tokenizer_report.json and DIR/<kind>/tokenizer.json (and tokenizer.model).
"""

import time

from absl import app
from absl import flags

from research import run_dir
from research.config import base_config, load_config_file
from research.data import corpus
from research.data import tokenizer as tokenizer_lib
from research.data import tokenizer_kinds
from research.data import tokenizer_report

_CONFIG = flags.DEFINE_string('config', None, 'A config file (default: base_config()).')
_OUT = flags.DEFINE_string('out', None, 'Where the report and the tokenizers go.')
_KINDS = flags.DEFINE_list('kinds', list(tokenizer_kinds.KINDS), 'Tokenizer kinds to compare.')
_VOCAB = flags.DEFINE_integer('vocab_size', 0, 'Vocabulary size (0: the config\'s).')
_CHARS = flags.DEFINE_integer('train_chars', 0, 'Train characters (0: the config\'s).')
_MAX_DOCS = flags.DEFINE_integer('max_validation_docs', 0, 'Measure on at most N docs (0: all).')
flags.mark_flag_as_required('out')


def main(argv):
  del argv
  config = load_config_file(_CONFIG.value) if _CONFIG.value else base_config()
  vocab_size = _VOCAB.value or config.model.vocab_size
  train_chars = _CHARS.value or config.data.tokenizer_train_chars
  train = corpus.load_split(config.data, 'train')
  validation = list(corpus.load_split(config.data, 'validation'))
  if _MAX_DOCS.value:
    validation = validation[:_MAX_DOCS.value]
  out = run_dir.as_path(_OUT.value)
  rows = {}
  print(f'{"kind":<22} {"vocab":>6} {"used":>6} {"bytes/tok":>9} {"exact":>6} {"fit s":>6}')
  for kind in _KINDS.value:
    start = time.time()
    trained = tokenizer_kinds.train(kind, train, vocab_size, train_chars)
    fit_s = time.time() - start
    row = tokenizer_report.measure(trained.tokenizer, validation)
    row.update(fit_seconds=fit_s, inexact=tokenizer_kinds.INEXACT.get(kind, ''))
    rows[kind] = row
    (out / kind).mkdir(parents=True, exist_ok=True)
    tokenizer_lib.save_tokenizer(trained.tokenizer, out / kind / run_dir.TOKENIZER_FILE)
    if trained.sentencepiece_model is not None:
      model = trained.sentencepiece_model
      run_dir.write_atomically(out / kind / run_dir.SENTENCEPIECE_FILE,
                               lambda tmp: run_dir.as_path(tmp).write_bytes(model))
    print(f'{kind:<22} {row["vocab_size"]:>6} {row["vocab_used"]:>6.1%} '
          f'{row["bytes_per_token"]:>9.3f} {row["exact_documents"]:>6.1%} {fit_s:>6.1f}')
  report = {'vocab_size': vocab_size, 'train_chars': train_chars,
            'validation_documents': len(validation), 'kinds': rows}
  run_dir.write_json_atomically(out / 'tokenizer_report.json', report)
  print(f'wrote {out / "tokenizer_report.json"}')


if __name__ == '__main__':
  app.run(main)
