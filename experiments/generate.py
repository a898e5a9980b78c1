"""Sample from a trained run: `python -m experiments.generate --workdir=RUN_DIR --prompt="..."`.

Reads the run's model config (`config.json`), tokenizer (`tokenizer.json`) and latest (or
`--step`) checkpoint, then prints `--num_samples` continuations. `--temperature=0` is greedy;
`--beam_size=W` runs beam search instead; `--quantize=int8|int4` decodes with weight-only
quantised params. Generation stops at the end-of-document token.
"""

if __name__ == '__main__':  # before the heavy imports: this may replace the process
  from research.host_memory import use_tuned_malloc
  use_tuned_malloc()


import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

from research.data import tokenizer as tokenizer_lib
from research.inference import generate
from research.inference.beam_search import beam_search
from research.inference.quantize import quantize_params
from research.inference.run import load_run

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by experiments.train.')
_PROMPT = flags.DEFINE_string('prompt', '', 'Text to continue.')
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 64, 'Tokens to generate per sample.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.8, '0 is greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens (0: all).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass (1: all).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sample i uses seed + i.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1, 'Continuations to print.')
_BEAM = flags.DEFINE_integer('beam_size', 0, 'Beam search with this width (0: sample).')
_LENGTH_PENALTY = flags.DEFINE_float('length_penalty', 1.0, 'Beam score / length ** this.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_QUANTIZE = flags.DEFINE_enum('quantize', 'none', ['none', 'int8', 'int4'],
                              'Weight-only quantisation of the params.')
flags.mark_flag_as_required('workdir')


def continuations(model_config, params, prompt_ids, eos):
  """Token ids after the prompt, one list per sample, cut at the first EOS."""
  if _MAX_NEW.value <= 0:
    raise ValueError(f'--max_new_tokens={_MAX_NEW.value} must be positive')
  max_new = min(_MAX_NEW.value, model_config.max_seq_len - len(prompt_ids))
  if max_new <= 0:
    raise ValueError(f'--prompt: {len(prompt_ids)} tokens fill the model context '
                     f'(max_seq_len={model_config.max_seq_len})')
  prompt_1xT = np.asarray([prompt_ids], np.int32)
  if _BEAM.value > 0:
    sequences, _ = beam_search(model_config, params, prompt_1xT, max_new, _BEAM.value,
                               _LENGTH_PENALTY.value, eos_id=eos, pad_id=eos)
    rows = sequences[0, :_NUM_SAMPLES.value]
  else:
    prompts = np.repeat(prompt_1xT, _NUM_SAMPLES.value, axis=0)
    rows = generate(model_config, params, prompts, max_new, _TEMPERATURE.value, _TOP_K.value,
                    _TOP_P.value, _SEED.value, stop_tokens=[eos], pad_id=eos)
  out = []
  for row in rows:
    new = row[len(prompt_ids):].tolist()
    out.append(new[:new.index(eos)] if eos in new else new)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    model_config, params, tokenizer, step = load_run(_WORKDIR.value, _STEP.value)
    if _QUANTIZE.value != 'none':
      bits = 8 if _QUANTIZE.value == 'int8' else 4
      params = quantize_params(params, bits, None if bits == 8 else 32)
    eos = tokenizer_lib.special_ids(tokenizer).eos
    # The training stream puts EOS between documents: it starts the prompt as a new document.
    prompt_ids = [eos] + tokenizer_lib.encode_texts(tokenizer, [_PROMPT.value])[0]
    samples = continuations(model_config, params, prompt_ids, eos)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'# {_WORKDIR.value} step {step}')
  for i, ids in enumerate(samples):
    print(f'--- sample {i} ---')
    print(_PROMPT.value + tokenizer.decode(ids))


if __name__ == '__main__':
  app.run(main)
