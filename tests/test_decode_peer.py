"""The decode peer rows: transformers' greedy `generate` and ours decode the same imported GPT-2
to the same tokens, so their speeds compare the same work."""

from experiments import decode_peer

TINY_GPT2 = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=512, n_positions=64)


def test_ours_and_transformers_agree_on_every_greedy_token():
  rows = decode_peer.compare(batches=(1, 3), prompt_len=8, new_tokens=12, repeats=1,
                             quantized_batches=(1,), seed=3, **TINY_GPT2)
  sides = {(r['side'], r['batch']): r for r in rows}
  assert set(sides) == {('transformers float32', 1), ('ours float32', 1), ('ours int8', 1),
                        ('ours int4_g32', 1), ('transformers float32', 3), ('ours float32', 3)}
  for batch in (1, 3):
    assert sides[('ours float32', batch)]['greedy_agreement'] == 1.0
  for name in ('int8', 'int4_g32'):  # their speed against ours in float32, same batch
    row, base = sides[(f'ours {name}', 1)], sides[('ours float32', 1)]
    assert abs(row['vs_float32'] - row['tok_s'] / base['tok_s']) < 1e-9
  assert all(r['tok_s'] > 0 for r in rows)
