"""research.config.set_field: a dotted field set from command-line text, read for its type."""

import pytest

from research.config import base_config, set_field


def test_text_is_read_for_the_field_type():
  c = base_config()
  c.train.update(note=None)
  for field, text in [('model.d_model', '96'), ('model.dtype', 'bfloat16'),
                      ('model.tied_embedding', 'false'), ('train.learning_rate', '2'),
                      ('mesh.ici', '[2, 2, 1]'), ('train.init_from.step', '7'),
                      ('data.text_dir', '/data/1e3'), ('train.note', 'a b')]:
    set_field(c, field, text)
  assert (c.model.d_model, c.model.dtype, c.model.tied_embedding) == (96, 'bfloat16', False)
  assert c.train.learning_rate == 2.0 and isinstance(c.train.learning_rate, float)
  assert c.mesh.ici == (2, 2, 1) and c.train.init_from.step == 7
  assert (c.data.text_dir, c.train.note) == ('/data/1e3', 'a b')  # strings stay as typed


@pytest.mark.parametrize('field,text,message', [
    ('model.d_modl', '96', 'model.d_modl: no such config field'),
    ('nope.d_model', '96', 'nope.d_model: no such config field'),
    ('model.d_model.x', '1', 'model.d_model.x: no such config field'),
    ('model.d_model', 'four', "model.d_model: 'four' is not a int"),
    ('model.d_model', '2.5', "model.d_model: '2.5' is not a int"),
    ('model.tied_embedding', 'yes', "model.tied_embedding: 'yes' is not a bool"),
    ('train.learning_rate', '1e-3x', "train.learning_rate: '1e-3x' is not a float"),
])
def test_bad_text_names_the_field(field, text, message):
  c = base_config()
  before = c.to_dict()
  with pytest.raises(ValueError, match=message):
    set_field(c, field, text)
  assert c.to_dict() == before
