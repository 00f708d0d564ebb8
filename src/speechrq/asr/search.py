"""Decoding: greedy CTC, greedy attention, and joint CTC/attention beam search (Watanabe et al., 2017), batched.

The beam search scores a prefix ``h`` as ``(1 - w) log p_att(h) + w log p_ctc(h)``, where
``p_ctc(h)`` is the CTC *prefix* probability (every alignment of the frames that starts
with ``h``), computed incrementally by the forward recursion over the encoder frames.
All utterances of a batch and all hypotheses of their beams are rows of one tensor:
each step runs the decoder once on every live prefix (incrementally: one new position
against cached keys and values, reordered with the beams), takes ``pre_beam`` candidates per
row by attention score, scores them with CTC (vectorised over rows and candidates; the
loop is over frames, the recursion itself), and keeps the ``beam`` best (row, candidate)
pairs per utterance. A hypothesis that takes ``<eos>`` is finished; an utterance's beam stops
once a finished hypothesis scores above every running one (none can overtake it: both halves of
the score only fall as a prefix grows), or at ``max_len`` (the number of encoder frames), where
``<eos>`` is forced. No length normalisation and no LM, as the paper's recipe. The best ended hypothesis
is returned; with ``keep_greedy`` it is first compared, under the same joint score
(:func:`joint_scores`), with the greedy CTC and greedy attention hypotheses, so the result never
scores below either half decoded alone (a narrow beam can otherwise lose them; off by default,
since on the demo's systems it costs CER: see :func:`joint_beam_search`).

With ``ctc_weight = 0`` and ``beam = 1`` the search is greedy attention decoding (a test).
"""

from __future__ import annotations

import torch

from ..frames import lengths_to_padding_mask
from ..text import greedy_ctc

NEG = -1e30  # a log-probability that is never chosen but stays finite (no nan from -inf - -inf)
SEARCH_VERSION = 2  # part of every saved decode's identity: bumped whenever the search may return other hypotheses


@torch.no_grad()
def ctc_greedy(model, enc: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """Best CTC path per utterance, as output token ids."""
    return [[k - 1 for k in ids] for ids in greedy_ctc(model.ctc_logp(enc), lens)]


@torch.no_grad()
def attention_greedy(model, enc: torch.Tensor, lens: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
    """Argmax of the attention decoder step by step until ``<eos>``, forced after ``max_len`` tokens (default: each
    utterance's encoder frames), as in :func:`joint_beam_search`."""
    dec, b = model.decoder, enc.shape[0]
    pad = lengths_to_padding_mask(lens, enc.shape[1])
    ys = torch.full((b, 1), dec.sos_eos, dtype=torch.long, device=enc.device)
    done = torch.zeros(b, dtype=torch.bool, device=enc.device)
    limits = lens.to(enc.device) if max_len is None else torch.full_like(lens, max_len).to(enc.device)
    cache = dec.start(enc, pad)
    for step in range(int(limits.max()) + 1):
        logp, cache = dec.step(ys[:, -1], cache)
        nxt = logp.argmax(-1)
        nxt = nxt.masked_fill(done | (step >= limits), dec.sos_eos)
        ys = torch.cat([ys, nxt[:, None]], 1)
        done |= nxt == dec.sos_eos
        if bool(done.all()):
            break
    out = []
    for row in ys[:, 1:].tolist():
        out.append(row[: row.index(dec.sos_eos)])
    return out


class CTCPrefixScorer:
    """CTC prefix probabilities of growing prefixes, for ``N`` rows over their own frames.

    ``logp [N, T, V + 1]`` (class 0 blank, token ``t`` class ``t + 1``) and frame counts
    ``lens [N]``. A prefix's state is ``r [N, T, 2]``: log-probability that the first ``t + 1``
    frames emit the prefix ending in a non-blank (0) or a blank (1). Frames past an
    utterance's end are made to emit blank with probability 1, so ``r[:, -1]`` is the
    probability of the whole utterance for every row.
    """

    def __init__(self, logp: torch.Tensor, lens: torch.Tensor):
        n, t, _ = logp.shape
        pad = lengths_to_padding_mask(lens, t)
        self.x = logp.masked_fill(pad[..., None], NEG)
        self.x[..., 0] = self.x[..., 0].masked_fill(pad, 0.0)
        self.blank = self.x[..., 0]  # [N, T]

    def initial(self) -> torch.Tensor:
        """The empty prefix's state: all-blank alignments."""
        r = torch.full((*self.blank.shape, 2), NEG, device=self.blank.device)
        r[..., 1] = self.blank.cumsum(1)
        return r

    def extend(self, r: torch.Tensor, last: torch.Tensor, empty: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score candidates ``cand [N, P]`` (output token ids) after prefixes with states ``r [N, T, 2]``.

        ``last [N]``: each prefix's last token (-1 when empty); ``empty [N]``: the prefix has no token.
        Returns the prefix scores ``psi [N, P]`` and the new states ``[N, P, T, 2]``.
        """
        n, t, _ = r.shape
        p = cand.shape[1]
        xc = self.x.gather(2, (cand + 1)[:, None, :].expand(n, t, p)).transpose(1, 2)  # [N, P, T]
        xb = self.blank[:, None, :]  # [N, 1, T]
        r_sum = torch.logaddexp(r[..., 0], r[..., 1])  # [N, T]
        # a repeated token needs a blank between: only alignments ending in blank continue it
        phi = torch.where((cand == last[:, None])[..., None], r[:, None, :, 1], r_sum[:, None, :])  # [N, P, T]
        new = torch.full((n, p, t, 2), NEG, device=r.device)
        new[:, :, 0, 0] = torch.where(empty[:, None], xc[:, :, 0], torch.full_like(xc[:, :, 0], NEG))
        for i in range(1, t):  # the forward recursion: each frame needs the previous one
            new[:, :, i, 0] = torch.logaddexp(new[:, :, i - 1, 0], phi[:, :, i - 1]) + xc[:, :, i]
            new[:, :, i, 1] = torch.logaddexp(new[:, :, i - 1, 0], new[:, :, i - 1, 1]) + xb[:, :, i]
        psi = torch.logsumexp(torch.cat([new[:, :, :1, 0], phi[:, :, :-1] + xc[:, :, 1:]], dim=2), dim=2)
        return psi, new

    @staticmethod
    def end(r: torch.Tensor) -> torch.Tensor:
        """``[N]``: the probability that the prefix is the whole transcript."""
        return torch.logaddexp(r[:, -1, 0], r[:, -1, 1])


@torch.no_grad()
def joint_beam_search(model, enc: torch.Tensor, lens: torch.Tensor, beam: int = 10, ctc_weight: float = 0.3,
                      pre_beam: int | None = None, max_len: int | None = None,
                      return_scores: bool = False, keep_greedy: bool = False, early_stop: bool = True
                      ) -> list[list[int]] | list[tuple[list[int], float]]:
    """Best hypothesis per utterance (output token ids) by joint CTC/attention beam search.

    ``early_stop``: an utterance's beam stops once a hypothesis has ended with a score that no running hypothesis
    reaches (both halves of the score only fall as a prefix grows, so none could end above it); the search ends when
    every utterance has stopped. The same hypotheses and scores as running every beam to ``<eos>`` or the length limit
    (``early_stop=False``, the reference it is tested against), up to the rounding of the CTC sums; on the demo's
    systems, 2.5 to 3x faster.

    ``return_scores``: ``(tokens, score)`` per utterance instead, the score the search ranked it by:
    ``(1 - ctc_weight) log p_att(tokens <eos>) + ctc_weight log p_ctc(tokens)`` (the whole-utterance CTC
    probability; at the length limit ``<eos>`` is forced and adds nothing to the attention term).

    ``keep_greedy``: also score the greedy CTC and greedy attention hypotheses under the same joint score and return the
    best of the three, so the result never scores below either half decoded alone (a narrow beam alone can lose them).
    Off by default: on the demo's three systems it raised test CER by 1.1 to 2.6 points (19.55 -> 20.69, 60.93 -> 63.55,
    62.66 -> 64.89): the joint score, without length normalisation, is not CER, and the search's pruning helped."""
    dec = model.decoder
    b, t, _ = enc.shape
    v, eos = dec.vocab, dec.sos_eos
    k = beam
    pre = min(v + 1, pre_beam or max(k, int(1.5 * k)))
    rows = b * k
    mem = enc.repeat_interleave(k, 0)
    mem_lens = lens.repeat_interleave(k, 0)
    mem_pad = lengths_to_padding_mask(mem_lens, t)
    scorer = CTCPrefixScorer(model.ctc_logp(enc).repeat_interleave(k, 0), mem_lens) if ctc_weight > 0 else None
    r = scorer.initial() if scorer else None
    ys = torch.full((rows, 1), eos, dtype=torch.long, device=enc.device)
    cache = dec.start(mem, mem_pad)
    att = torch.zeros(rows, device=enc.device)
    # only the first beam of each utterance is alive at the start: the others would duplicate it
    alive = (torch.arange(rows, device=enc.device) % k == 0)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    limits = (lens if max_len is None else torch.full_like(lens, max_len)).to(enc.device).repeat_interleave(k)  # per row
    best_ended = torch.full((b,), NEG, device=enc.device)  # per utterance: the best score a hypothesis ended with so far
    for step in range(int(limits.max()) + 1):
        logp, cache = dec.step(ys[:, -1], cache)  # [rows, V + 1]
        last_step = step >= limits
        logp = torch.where(last_step[:, None], torch.full_like(logp, NEG).scatter(1, torch.full((rows, 1), eos, device=enc.device), 0.0),
                           logp)  # at the length limit only <eos> remains
        cand_att, cand = logp.topk(pre, dim=1)  # [rows, P]
        if scorer:
            empty = torch.full((rows,), ys.shape[1] == 1, device=enc.device)
            last = ys[:, -1] if ys.shape[1] > 1 else torch.full((rows,), -1, device=enc.device)
            psi, states = scorer.extend(r, last, empty, cand.clamp(max=v - 1))  # <eos> is scored separately below
            psi = torch.where(cand == eos, CTCPrefixScorer.end(r)[:, None].expand_as(psi), psi)
            score = (1 - ctc_weight) * (att[:, None] + cand_att) + ctc_weight * psi
        else:
            score = att[:, None] + cand_att
        score = score.masked_fill(~alive[:, None], NEG)
        flat = score.view(b, k * pre)
        top, idx = flat.topk(k, dim=1)  # [B, K]
        src = (idx // pre) + torch.arange(b, device=enc.device)[:, None] * k  # the row each new hypothesis extends
        col = idx % pre
        src, col, top = src.reshape(-1), col.reshape(-1), top.reshape(-1)
        token = cand[src, col]
        new_att = att[src] + cand_att[src, col]
        new_ys = torch.cat([ys[src], token[:, None]], 1)
        is_eos = (token == eos) & (top > NEG / 2)
        for row in is_eos.nonzero().flatten().tolist():
            finished[row // k].append((float(top[row]), new_ys[row, 1:-1].tolist()))
        alive = (top > NEG / 2) & ~is_eos
        # early stop: an utterance is done once a hypothesis ended with a score no running one reaches. Both halves of
        # the score only fall as a prefix grows (log p_att adds log-probabilities <= 0; the CTC prefix probability of a
        # longer prefix, and the whole-utterance one at <eos>, are at most the prefix's), so no running hypothesis can
        # end above it; on a tie the first ended one is kept, as max() below keeps it
        if early_stop:
            best_ended.scatter_reduce_(0, src // k, torch.where(is_eos, top, NEG), reduce="amax")
            running = top.masked_fill(~alive, NEG).view(b, k).amax(1)
            alive &= (running > best_ended).repeat_interleave(k)
        ys, att, cache = new_ys, new_att, cache.select(src)
        if scorer:
            r = states[src, col]
        if not bool(alive.any()):
            break
    ended = [max(f, key=lambda s: s[0]) if f else (NEG, []) for f in finished]  # (nothing ended cannot happen: <eos> is forced)
    if not keep_greedy:
        return [(hyp, score) if return_scores else hyp for score, hyp in ended]
    # greedy CTC and greedy attention compete under the same joint score (a narrow beam can lose them, since an ended
    # hypothesis competes for the beam with running prefixes); ties keep the beam's
    options = [[hyp for _, hyp in ended], ctc_greedy(model, enc, lens), attention_greedy(model, enc, lens, max_len)]
    scores = torch.stack([joint_scores(model, enc, lens, hyps, ctc_weight, max_len) for hyps in options])  # [3, B]
    best = scores.argmax(0).tolist()  # argmax takes the first maximum: the beam's on ties
    return [(options[best[i]][i], float(scores[best[i], i])) if return_scores else options[best[i]][i] for i in range(b)]


@torch.no_grad()
def joint_scores(model, enc: torch.Tensor, lens: torch.Tensor, hyps: list[list[int]], ctc_weight: float = 0.3,
                 max_len: int | None = None) -> torch.Tensor:
    """``[B]`` joint score of one whole hypothesis per utterance, as :func:`joint_beam_search` ranks ended hypotheses:
    ``(1 - w) log p_att(y <eos>) + w log p_ctc(y)`` (``p_ctc`` over every alignment of the utterance's frames; at the
    length limit ``<eos>`` is forced and adds nothing). A hypothesis the search could not produce (longer than the
    limit, or impossible for CTC) scores :data:`NEG`."""
    import torch.nn.functional as F

    dec, b, device = model.decoder, enc.shape[0], enc.device
    token_lens = torch.tensor([len(h) for h in hyps], dtype=torch.long, device=device)
    u = max(1, int(token_lens.max()))
    tokens = torch.zeros(b, u, dtype=torch.long, device=device)
    for i, h in enumerate(hyps):
        tokens[i, : len(h)] = torch.tensor(h, dtype=torch.long, device=device)
    pad = torch.arange(u, device=device)[None] >= token_lens[:, None]
    limits = (lens if max_len is None else torch.full_like(lens, max_len)).to(device)
    # attention: teacher forcing <sos> y -> y <eos>, the <eos> term dropped where it is forced (at the limit)
    sos = torch.full((b, 1), dec.sos_eos, dtype=torch.long, device=device)
    ys_in = torch.cat([sos, tokens.masked_fill(pad, dec.sos_eos)], 1)
    target = torch.cat([tokens, sos], 1)
    target[torch.arange(b, device=device), token_lens] = dec.sos_eos
    logp = F.log_softmax(dec(ys_in, token_lens + 1, enc, lengths_to_padding_mask(lens, enc.shape[1])).float(), -1)
    picked = logp.gather(2, target[..., None])[..., 0]  # [B, U + 1]
    positions = torch.arange(u + 1, device=device)[None]
    counted = (positions < token_lens[:, None]) | ((positions == token_lens[:, None]) & (token_lens < limits)[:, None])
    att = (picked * counted).sum(1)
    score = att
    if ctc_weight > 0:
        ctc = -F.ctc_loss(model.ctc_logp(enc).float().transpose(0, 1), (tokens + 1).masked_fill(pad, 0), lens.to(device), token_lens,
                          blank=0, reduction="none", zero_infinity=False)
        score = (1 - ctc_weight) * att + ctc_weight * ctc
    return torch.where(torch.isfinite(score) & (token_lens <= limits), score, torch.full_like(score, NEG))
