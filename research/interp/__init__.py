"""Interpretability for any run or imported model, without touching the compiled training step.

`attention_patterns(model_config, params, tokens_BxT)` -> float32 [L, B, H, T, T],
`residual_stream(model_config, params, tokens_BxT)` -> float32 [L + 1, B, T, D] and
`induction_scores(model_config, params, seq_len, batch=8, seed=0)` -> float32 [L, H] are the entry
points; `capture` returns every named activation, `logit_lens` reads each layer out,
`patch_sweep`/`ablate_heads` patch and knock out activations, `direct_logit_attribution` splits a
logit into what each head and MLP wrote. docs/interpretability.md shows them in use.
"""

from research.interp.attribution import Attribution, direct_logit_attribution
from research.interp.capture import POINTS, capture
from research.interp.induction import (in_context_learning_score, induction_scores,
                                       next_token_loss, repeated_random_tokens)
from research.interp.lens import LogitLens, logit_lens
from research.interp.patching import (ablate_heads, logit_difference, next_token_loss_metric,
                                      patch_sweep)
from research.interp.streams import attention_patterns, residual_stream

__all__ = ['Attribution', 'LogitLens', 'POINTS', 'ablate_heads', 'attention_patterns', 'capture',
           'direct_logit_attribution', 'in_context_learning_score', 'induction_scores',
           'logit_difference', 'logit_lens', 'next_token_loss', 'next_token_loss_metric',
           'patch_sweep', 'repeated_random_tokens', 'residual_stream']
