"""A run as an lm-evaluation-harness model: `RunLM`, and `evaluate_tasks` to run tasks with it.

Log-likelihoods go through `research.evals.scoring` (the context cut from the left to fit the
model's window, as the harness's own Hugging Face model does), rolling log-likelihoods through the
harness's disjoint windows with EOS as the first context, and generation is greedy through
`research.inference.generate`, stopped at EOS or the first of the request's `until` strings.
Needs the optional `eval` extra (`pip install -e '.[eval]'`, which pins lm_eval).
"""

from __future__ import annotations

import ml_collections
import numpy as np
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from tokenizers import Tokenizer

from research.data import tokenizer as tokenizer_lib
from research.evals.scoring import score_tokens
from research.inference import generate
from research.inference.params import prepare_params
from research.inference.run import load_run


class RunLM(TemplateLM):
  """`RunLM(model_config, params, tokenizer)` or `RunLM.from_run(workdir)`: an `lm_eval` model.

  Greedy generation only: a request asking for sampling (`do_sample=True` or a temperature above
  0) raises ValueError instead of silently decoding greedily.
  """

  def __init__(self, model_config: ml_collections.ConfigDict, params, tokenizer: Tokenizer,
               batch_size: int = 8, max_gen_toks: int = 64):
    super().__init__()
    self.model_config = model_config
    self.params = prepare_params(model_config, params)
    self.text_tokenizer = tokenizer
    self.encoder = tokenizer_lib.text_encoder(tokenizer)
    self.batch_size = int(batch_size)
    self.max_gen_toks = int(max_gen_toks)
    self._eos = tokenizer_lib.special_ids(tokenizer).eos
    self.step = None  # the checkpoint's step, when read from a run directory

  @classmethod
  def from_run(cls, workdir, step: int | None = None, **kwargs) -> 'RunLM':
    """The run's latest checkpoint (or `step`) with its tokenizer."""
    model_config, params, tokenizer, step = load_run(workdir, step)
    lm = cls(model_config, params, tokenizer, **kwargs)
    lm.step = step
    return lm

  @property
  def eot_token_id(self) -> int:
    return self._eos

  @property
  def max_length(self) -> int:
    return self.model_config.max_seq_len

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    return self.encoder.encode(string, add_special_tokens=False).ids

  def tok_decode(self, tokens) -> str:
    return self.text_tokenizer.decode(list(tokens), skip_special_tokens=True)

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    """(key, context tokens, continuation tokens) -> (log p(continuation), is greedy) each."""
    limit = self.max_length + 1
    sequences = [(list(context) + list(continuation))[-limit:]
                 for _, context, continuation in requests]
    counts = [len(continuation) for _, _, continuation in requests]
    scored = score_tokens(self.model_config, self.params, sequences, counts, self.batch_size)
    out = [(float(lp), bool(g)) for lp, g in zip(scored.logprob, scored.greedy)]
    for (key, _, _), result in zip(requests, out):
      if key is not None:
        self.cache_hook.add_partial('loglikelihood', key, result)
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    """Each string's total log-likelihood, every token predicted once with the most context."""
    windows, owners = [], []
    for r, (string,) in enumerate(req.args for req in requests):
      for context, prediction in map(lm_utils.make_disjoint_window,
                                     lm_utils.get_rolling_token_windows(
                                         token_list=self.tok_encode(string),
                                         prefix_token=self.prefix_token_id,
                                         max_seq_len=self.max_length, context_len=1)):
        windows.append((None, context, prediction))
        owners.append(r)
    totals = np.zeros(len(requests))
    for r, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows)):
      totals[r] += logprob
    return [float(t) for t in totals]

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    """Greedy continuations, cut before the first `until` string, at most `max_gen_toks` long."""
    out = []
    for context, gen_kwargs in (req.args for req in requests):
      gen_kwargs = dict(gen_kwargs or {})
      if gen_kwargs.get('do_sample') or gen_kwargs.get('temperature', 0.0) > 0.0:
        raise ValueError(f'generation_kwargs={gen_kwargs}: RunLM decodes greedily only')
      until = gen_kwargs.get('until') or []
      until = [until] if isinstance(until, str) else list(until)
      new_tokens = min(int(gen_kwargs.get('max_gen_toks', self.max_gen_toks)),
                       self.max_length - 1)
      prompt = (self.tok_encode(context) or [self.prefix_token_id])
      prompt = prompt[-(self.max_length - new_tokens):]
      tokens = generate(self.model_config, self.params, np.asarray([prompt], np.int32),
                        new_tokens, stop_tokens=(self._eos,), pad_id=self._eos)[0, len(prompt):]
      ended = np.flatnonzero(tokens == self._eos)
      text = self.tok_decode(tokens[:ended[0]] if len(ended) else tokens)
      cut = min([text.find(s) for s in until if s and s in text], default=len(text))
      text = text[:cut]
      self.cache_hook.add_partial('generate_until', (context, gen_kwargs), text)
      out.append(text)
    return out


def evaluate_tasks(lm: RunLM, tasks: list[str], include_path: str | None = None,
                   include_defaults: bool = True, limit: int | None = None,
                   num_fewshot: int | None = None) -> dict:
  """Runs harness tasks (names, or tasks defined by YAML files under `include_path`) -> the
  harness's results dict ({'results': {task: {metric: value}}, ...}). `include_defaults=False`
  skips indexing the harness's thousands of built-in tasks (seconds) when only yours are run."""
  from lm_eval import simple_evaluate
  from lm_eval.tasks import TaskManager
  manager = TaskManager(include_path=include_path, include_defaults=include_defaults)
  return simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                         num_fewshot=num_fewshot, bootstrap_iters=0, log_samples=False)
