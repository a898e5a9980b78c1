"""Evaluations of a run: bits per byte and perplexity on any text, probes of known failure modes
(lost in the middle, character-level tasks, addition for emergence), and an lm-evaluation-harness
adapter (`research.evals.harness`, which needs the optional `eval` extra and so is not imported
here). docs/evaluation.md shows them in use.
"""

from research.evals.arithmetic import addition
from research.evals.bits_per_byte import bits_per_byte, bits_per_byte_of, stdlib_texts
from research.evals.characters import character_tasks, character_tokenizer
from research.evals.retrieval import lost_in_the_middle
from research.evals.run import run_bits_per_byte
from research.evals.scoring import Scored, score_continuations, score_texts, score_tokens

__all__ = ['Scored', 'addition', 'bits_per_byte', 'bits_per_byte_of', 'character_tasks',
           'character_tokenizer', 'lost_in_the_middle', 'run_bits_per_byte', 'score_continuations',
           'score_texts', 'score_tokens', 'stdlib_texts']
