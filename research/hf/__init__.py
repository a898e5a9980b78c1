"""Import and export Hugging Face `transformers` checkpoints: GPT-2, Llama, Mistral, Mixtral, Mamba.

`from_pretrained(directory)` reads a `config.json` and `model.safetensors` (or a sharded
`model.safetensors.index.json`) into a model config and float32 params for `Transformer`;
`save_pretrained(model_config, params, directory)` writes the files back so that
`transformers.AutoModelForCausalLM.from_pretrained(directory)` computes the same logits.

A family is one module (`gpt2`, `llama`, `mixtral`, `mamba`): its config fields both ways and
one table of tensor rules (`tables.Rule`) that import and export both read. Adding a family is adding such a module
to `convert.FAMILIES`.
"""

from research.hf.convert import CONFIG_FILE
from research.hf.convert import WEIGHTS_FILE
from research.hf.convert import WEIGHTS_INDEX_FILE
from research.hf.convert import from_pretrained
from research.hf.convert import save_pretrained

__all__ = ['CONFIG_FILE', 'WEIGHTS_FILE', 'WEIGHTS_INDEX_FILE', 'from_pretrained',
           'save_pretrained']
