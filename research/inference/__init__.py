"""Inference on the training model: KV-cache decoding, sampling, beam search, speculative decoding
(also self-speculative, with multi-token heads), weight-only quantisation and a continuous-batching
engine.

`generate(model_config, params, prompt_tokens_BxT, max_new_tokens, temperature=0.0, top_k=0,
top_p=1.0, seed=0)` -> int32 [B, T + max_new_tokens] is the entry point; the rest are here too.
"""

from research.inference.beam_search import beam_search
from research.inference.engine import Engine, Request
from research.inference.generation import generate
from research.inference.quantize import dequantize_params, quantize_params
from research.inference.sampling import SamplingParams
from research.inference.self_speculative import self_speculative_generate
from research.inference.speculative import speculative_generate

__all__ = ['Engine', 'Request', 'SamplingParams', 'beam_search', 'dequantize_params', 'generate',
           'quantize_params', 'self_speculative_generate', 'speculative_generate']
