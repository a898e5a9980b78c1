"""The package structure, checked from the source: the import graph between the parts of
`research/` has no cycle and no upward arrow, and each run-directory file name is spelled once."""

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]
LIBRARY = ROOT / 'research'
# Each part may import parts of its own layer or below, never above.
LAYERS = (
    ('run_dir', 'host_memory'),  # files and processes; no jax
    ('model', 'scaling'),  # the Flax modules; the scaling-law fits (numpy and scipy)
    ('data', 'parallel', 'hf'),  # corpora and tokenizers; meshes and rules; checkpoint formats
    ('config',),  # the full run config, from the model's, the mesh's and the data's defaults
    ('train',),
    ('inference',),
    ('evals', 'interp'),  # evaluations and probes of a run; looking inside it
    ('posttrain',),  # SFT, reward models, DPO, PPO, GRPO: training and inference together
    ('sweeps',),
)
FORBIDDEN = {  # (importer, imported): arrows the layering alone would allow but the design forbids
    ('data', 'model'), ('parallel', 'train'), ('scaling', 'train'), ('scaling', 'sweeps'),
    ('scaling', 'data'), ('scaling', 'model'), ('hf', 'train'),
    ('interp', 'train'), ('interp', 'sweeps'),  # interp reads a run through inference.run only
}


def _part(module: str) -> str | None:
  """'research.model.attention' -> 'model'; None outside the library."""
  names = module.split('.')
  return names[1] if names[0] == 'research' and len(names) > 1 else None


def _imports(path: pathlib.Path) -> list[str]:
  """Every module `path` imports, at the top or inside functions (relative imports resolved)."""
  tree = ast.parse(path.read_text(), str(path))
  package = '.'.join(path.relative_to(ROOT).with_suffix('').parts[:-1])
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] +
                        ([base] if base else []))
      out += [base] + [f'{base}.{alias.name}' for alias in node.names]
  return out


def _graph() -> dict[str, set[str]]:
  """part -> the parts it imports."""
  graph = collections.defaultdict(set)
  for path in LIBRARY.rglob('*.py'):
    importer = _part('.'.join(path.relative_to(ROOT).with_suffix('').parts))
    for module in _imports(path):
      if module.split('.')[0] == 'experiments':
        graph[importer].add('experiments')
      imported = _part(module)
      if imported and imported != importer and (LIBRARY / imported).exists() or (
          imported and (LIBRARY / f'{imported}.py').exists() and imported != importer):
        graph[importer].add(imported)
  return graph


def test_every_part_of_the_library_has_a_layer():
  parts = {p.stem if p.suffix == '.py' else p.name for p in LIBRARY.iterdir()
           if (p.suffix == '.py' and p.stem != '__init__') or (p / '__init__.py').exists()}
  assert parts == {part for layer in LAYERS for part in layer}


def test_no_upward_or_forbidden_import_and_nothing_imports_experiments():
  layer_of = {part: i for i, layer in enumerate(LAYERS) for part in layer}
  bad = []
  for importer, imported in sorted(_graph().items()):
    for target in sorted(imported):
      if target == 'experiments':
        bad.append(f'research.{importer} imports experiments')
      elif layer_of[target] > layer_of[importer]:
        bad.append(f'research.{importer} (layer {layer_of[importer]}) imports research.{target} '
                   f'(layer {layer_of[target]})')
      elif (importer, target) in FORBIDDEN:
        bad.append(f'research.{importer} imports research.{target}')
  assert not bad, '\n'.join(bad)


def test_the_model_imports_nothing_outside_it():
  for path in (LIBRARY / 'model').rglob('*.py'):
    outside = {m for m in _imports(path) if _part(m) not in (None, 'model')}
    assert not outside, f'{path.relative_to(ROOT)} imports {sorted(outside)}'


def test_no_import_cycle_between_parts():
  graph = _graph()
  state = {}

  def visit(node, stack):
    state[node] = 'open'
    for nxt in graph.get(node, ()):
      if nxt == 'experiments':
        continue
      if state.get(nxt) == 'open':
        pytest.fail('import cycle: ' + ' -> '.join(stack + [node, nxt]))
      if nxt not in state:
        visit(nxt, stack + [node])
    state[node] = 'done'

  for node in list(graph):
    if node not in state:
      visit(node, [])


def _string_constants(path: pathlib.Path) -> list[str]:
  """String literals of a module, docstrings excluded."""
  tree = ast.parse(path.read_text(), str(path))
  docstrings = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        docstrings.add(id(body[0].value))
  return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
          and isinstance(n.value, str) and id(n) not in docstrings]


def test_each_run_directory_file_name_is_spelled_once():
  from research.run_dir import layout
  # File names, and the directory names that are not also ordinary words ('fits', 'profile').
  names = {v for k, v in vars(layout).items()
           if k.endswith('_FILE') or v in ('checkpoints', 'tensorboard', 'tokenizers')}
  assert {'config.json', 'summary.json', 'metrics.jsonl', 'tokenizer.json', 'results.csv',
          'checkpoints'} <= names
  spelled = collections.defaultdict(list)
  for path in LIBRARY.rglob('*.py'):
    # A Hugging Face model directory has a config.json of its own format: not a run directory.
    if path.relative_to(LIBRARY).parts[0] == 'hf':
      continue
    for value in _string_constants(path):
      for name in names:
        if value == name or value.endswith(f'/{name}'):
          spelled[name].append(str(path.relative_to(ROOT)))
  assert all(places == ['research/run_dir/layout.py'] for places in spelled.values()), dict(spelled)
