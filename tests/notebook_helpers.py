"""Running a notebook of `notebooks/` top to bottom in a fresh kernel, as the tests do."""

import pathlib

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).parents[1]


def execute_notebook(path, monkeypatch) -> tuple[list, str]:
  """-> (every code cell's outputs, their printed text); the kernel imports from the checkout."""
  monkeypatch.setenv('PYTHONPATH', str(ROOT))
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name='python3',
                 resources={'metadata': {'path': str(ROOT)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  return outputs, ''.join(o.get('text', '') for o in outputs)
