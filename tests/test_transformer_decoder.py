"""The attention decoder: incremental decoding with cached keys and values equals recomputing every prefix."""

from __future__ import annotations

import torch

from speechrq.models.transformer_decoder import TransformerDecoder


def test_incremental_steps_equal_recomputing_the_prefix_with_padded_memory_and_beam_reordering():
    torch.manual_seed(0)
    dec = TransformerDecoder(vocab=20, dim=32, heads=4, ffn_dim=64, num_layers=2).eval()
    # two utterances (9 and 5 frames) with two hypotheses each, as a beam search holds them
    memory = torch.randn(2, 9, 32).repeat_interleave(2, 0)
    pad = torch.arange(9)[None] >= torch.tensor([9, 9, 5, 5])[:, None]  # True at padding
    ys = torch.randint(0, 20, (4, 7))
    ys[:, 0] = dec.sos_eos
    cache = dec.start(memory, pad)
    with torch.no_grad():
        for u in range(1, 7):
            logp, cache = dec.step(ys[:, u - 1], cache)
            torch.testing.assert_close(logp, dec.next_token_logp(ys[:, :u], memory, pad), atol=1e-5, rtol=1e-5)
        # beams are reordered between steps: a row continues the cache of the row it extends, in its utterance
        order = torch.tensor([1, 1, 3, 2])
        cache = cache.select(order)
        ys, memory, pad = ys[order], memory[order], pad[order]
        logp, _ = dec.step(ys[:, 6], cache)
        torch.testing.assert_close(logp, dec.next_token_logp(ys, memory, pad), atol=1e-5, rtol=1e-5)
