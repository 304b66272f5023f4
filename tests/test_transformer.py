"""zoo.nn.transformer against an independent per-sequence reference: ragged packing, KV cache, RoPE, GQA, sampler."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import InputError
from zoo.nn.transformer import (
    IncrementalDecoder,
    KVCache,
    RMSNorm,
    Transformer,
    TransformerConfig,
    apply_rotary,
    rotary_phases,
    sample_top_p,
)

VOCAB = 23


def tiny(n_heads=4, n_kv_heads=2, seed=0, **kwargs) -> Transformer:
    torch.manual_seed(seed)
    config = TransformerConfig(dim=32, n_layers=2, head_dim=8, hidden_dim=48, n_heads=n_heads, n_kv_heads=n_kv_heads,
                               vocab_size=VOCAB, **kwargs)
    model = Transformer(config).eval()
    with torch.no_grad():  # norm gains and biases away from their init, so that they matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def reference_logits(model: Transformer, ids: torch.Tensor, norm_eps: float | None = None) -> torch.Tensor:
    """One sequence through the block written out plainly: explicit softmax attention, rotate pairs by cos/sin
    (``norm_eps`` overrides the config's RMSNorm epsilon)."""
    cfg = model.config
    eps = cfg.norm_eps if norm_eps is None else norm_eps
    n = len(ids)
    pos = torch.arange(n, dtype=torch.float32)
    freqs = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    angles = pos[:, None] * freqs[None]
    cos, sin = angles.cos()[:, None], angles.sin()[:, None]

    def rope(x):  # x (n, heads, head_dim): out[2j] = x[2j] cos - x[2j+1] sin, out[2j+1] = x[2j] sin + x[2j+1] cos
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)

    def rms(x, norm):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight

    h = model.tok_embeddings.weight[ids]
    causal = torch.ones(n, n).tril().bool()
    for layer in model.layers:
        att = layer.attention
        x = rms(h, layer.attention_norm)
        q = rope((x @ att.wq.weight.T).view(n, cfg.n_heads, cfg.head_dim))
        k = rope((x @ att.wk.weight.T).view(n, cfg.n_kv_heads, cfg.head_dim))
        v = (x @ att.wv.weight.T).view(n, cfg.n_kv_heads, cfg.head_dim)
        heads = []
        for head in range(cfg.n_heads):
            kv = head // (cfg.n_heads // cfg.n_kv_heads)
            scores = (q[:, head] @ k[:, kv].T) / math.sqrt(cfg.head_dim)
            heads.append(scores.masked_fill(~causal, -torch.inf).softmax(-1) @ v[:, kv])
        h = h + torch.cat(heads, -1) @ att.wo.weight.T
        x = rms(h, layer.ffn_norm)
        ff = layer.feed_forward
        h = h + (torch.nn.functional.silu(x @ ff.w1.weight.T) * (x @ ff.w3.weight.T)) @ ff.w2.weight.T
    return model.output(rms(h, model.norm))


def random_rows(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g) for n in lengths]


@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
@torch.no_grad()
def test_ragged_packed_batch_equals_independent_reference(heads):
    model = tiny(*heads, output_bias=True)
    rows = random_rows([7, 1, 12, 3])
    logits = model(torch.cat(rows), [len(r) for r in rows])
    assert logits.dtype == torch.float32 and logits.shape == (23, VOCAB)
    for got, row in zip(logits.split([len(r) for r in rows]), rows):
        torch.testing.assert_close(got, reference_logits(model, row), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_equal_length_batch_uses_the_causal_fast_path_and_matches():
    model = tiny()
    rows = random_rows([6, 6, 6])
    logits = model(torch.cat(rows), [6, 6, 6])
    for got, row in zip(logits.split(6), rows):
        torch.testing.assert_close(got, reference_logits(model, row), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_kv_cache_chunks_equal_one_full_forward_per_row():
    model = tiny()
    rows = random_rows([9, 4, 13])
    cache = model.new_cache(batch_size=3, max_length=20)
    cuts = [[3, 8], [1, 2], [5, 6]]  # each row fed in three ragged pieces, continuing at its own length
    pieces = [[row[:a], row[a:b], row[b:]] for row, (a, b) in zip(rows, cuts)]
    outputs = [[], [], []]
    for step in range(3):
        new = [p[step] for p in pieces]
        logits = model(torch.cat(new), [len(x) for x in new], cache)
        for out, part in zip(outputs, logits.split([len(x) for x in new])):
            out.append(part)
    assert cache.lengths == [9, 4, 13]
    for out, row in zip(outputs, rows):
        torch.testing.assert_close(torch.cat(out), model(row, [len(row)]), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_greedy_decoding_with_cache_equals_full_reforward():
    model = tiny(seed=3)
    prompts = random_rows([5, 2, 8], seed=4)
    tokens = {}
    for use_cache in (True, False):
        decoder = IncrementalDecoder(model, 3, max_length=8 + 30, use_cache=use_cache)
        logits = decoder(torch.cat(prompts), [len(p) for p in prompts])
        drawn = []
        for _ in range(30):
            drawn.append(sample_top_p(logits, temperature=0.0, top_p=1.0))
            logits = decoder(drawn[-1], [1, 1, 1])
        tokens[use_cache] = torch.stack(drawn, 1)
    assert torch.equal(tokens[True], tokens[False])


# ------------------------------------------------------------------------------------------ RMSNorm epsilon
#: Hidden states of trained LMs have an RMS of about 0.02, where eps is 0.25-2.5 % of the mean square: the tiny
#: random models above (RMS ~1) never reach that regime, so eps is checked here at that scale.
ACTIVATION_RMS = 0.02


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_rms_norm_eps_at_realistic_activation_scale(eps):
    """RMSNorm in float32 equals the original formula ``x * rsqrt(mean(x²) + eps) * weight`` evaluated in float64."""
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(64, eps)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(64, generator=g))
    x = ACTIVATION_RMS * torch.randn(6, 64, generator=g)
    x64, weight = x.double(), norm.weight.detach().double()
    want = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * weight
    without_eps = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True)) * weight
    assert not torch.allclose(without_eps, want, atol=0, rtol=1e-4)  # eps matters at this scale
    torch.testing.assert_close(norm(x).double(), want, atol=0, rtol=2e-6)
    half = norm.to(torch.bfloat16)(x.bfloat16())  # the statistic in float32, the gain in the input's dtype
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), want, atol=0, rtol=2e-2)


@torch.no_grad()
def test_realistic_activation_scale_equals_reference():
    """Embeddings at the scale of a trained model's: the whole stack, eps included, equals the plain reference."""
    model = tiny(norm_eps=1e-5)
    model.tok_embeddings.weight.mul_(ACTIVATION_RMS / model.tok_embeddings.weight.pow(2).mean().sqrt())
    row = random_rows([9])[0]
    want = reference_logits(model, row)
    assert not torch.allclose(reference_logits(model, row, norm_eps=0.0), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model(row, [len(row)]), want, atol=1e-5, rtol=1e-5)


def test_rotary_is_interleaved_pairs_with_float32_angles():
    positions = torch.tensor([0, 1, 7999])
    phases = rotary_phases(positions, head_dim=8, theta=10000.0)
    freqs = 1.0 / 10000.0 ** (torch.arange(0, 8, 2).float() / 8)
    table = torch.outer(torch.arange(8000), freqs)  # the original's float32 table
    assert torch.equal(torch.angle(phases), torch.angle(torch.polar(torch.ones(3, 4), table[positions])))
    x = torch.zeros(3, 1, 8)
    x[..., 0] = 1.0  # the first pair (x0, x1) = (1, 0) turns into (cos, sin) of the first frequency
    out = apply_rotary(x, phases)
    torch.testing.assert_close(out[:, 0, 1], table[positions, 0].sin())
    assert torch.count_nonzero(out[..., 2:]) == 0  # other pairs untouched, not mixed in (no half split)


@torch.no_grad()
def test_half_precision_flows_and_logits_are_float32():
    model = tiny().to(torch.bfloat16)
    rows = random_rows([4, 6])
    logits = model(torch.cat(rows), [4, 6])
    assert logits.dtype == torch.float32
    assert model.new_cache(2, 10).keys.dtype == torch.bfloat16
    torch.testing.assert_close(logits, tiny()(torch.cat(rows), [4, 6]), atol=0.1, rtol=0.05)


def test_sampler_greedy_top1_and_nucleus():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]).log()
    assert sample_top_p(logits, temperature=0.0, top_p=0.5).tolist() == [0, 3]
    torch.manual_seed(0)
    assert all(sample_top_p(logits, 1.0, 0.0).tolist() == [0, 3] for _ in range(20))
    # top_p=0.6: the sorted tail whose preceding mass already exceeds 0.6 is dropped -> only the top two remain
    torch.manual_seed(0)
    drawn = torch.stack([sample_top_p(logits, 1.0, 0.6) for _ in range(400)])
    assert set(drawn[:, 0].tolist()) == {0, 1} and set(drawn[:, 1].tolist()) == {3, 2}
    assert 0.55 < (drawn[:, 0] == 0).float().mean() < 0.70  # renormalised: 0.5 / 0.8 = 0.625
    with pytest.raises(InputError, match="top_p"):
        sample_top_p(logits, 1.0, 1.5)


def reference_draw(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Mistral's reference sampler (ELLA-V's): probabilities ``softmax(logits / temperature)``, the sorted tail past
    ``top_p`` dropped, ONE ``torch.multinomial`` call for the batch."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    mask = probs_sort.cumsum(-1) - probs_sort > top_p
    probs_sort[mask] = 0.0
    probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
    return torch.gather(probs_idx, -1, torch.multinomial(probs_sort, num_samples=1)).squeeze(-1)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampler_divides_the_logits_by_the_temperature(temperature):
    """At temperatures other than 0 and 1 the draws follow softmax(logits / T) (T = 0.5 sharpens, T = 2 flattens):
    in their frequencies, and seeded draw by seeded draw as the reference sampler's."""
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]])
    logits = probs.log().repeat(4000, 1)  # 4000 draws of each row in one call
    torch.manual_seed(0)
    drawn = sample_top_p(logits, temperature, 1.0).view(4000, 2)
    frequencies = torch.stack([torch.bincount(drawn[:, b], minlength=4) for b in range(2)]).float() / 4000
    torch.testing.assert_close(frequencies, torch.softmax(probs.log() / temperature, -1), atol=0.03, rtol=0)
    rows = 3 * torch.randn(500, VOCAB, generator=torch.Generator().manual_seed(1))
    for top_p in (1.0, 0.8):
        torch.manual_seed(2)
        ours = sample_top_p(rows, temperature, top_p)
        torch.manual_seed(2)
        assert torch.equal(ours, reference_draw(rows, temperature, top_p))


def test_bad_inputs_are_clear_errors():
    model = tiny()
    with pytest.raises(InputError, match="sum\\(seqlens\\) = 5"):
        model(torch.zeros(4, dtype=torch.long), [2, 3])
    with pytest.raises(InputError, match=">= 1"):
        model(torch.zeros(4, dtype=torch.long), [4, 0])
    with pytest.raises(InputError, match=r"token ids \[23\]"):
        model(torch.tensor([1, 23]), [2])
    with pytest.raises(InputError, match="integer"):
        model(torch.zeros(2), [2])
    with pytest.raises(InputError, match="8000 positions"):
        model(torch.zeros(8001, dtype=torch.long), [8001])
    cache = KVCache(model.config, batch_size=2, max_length=4)
    with pytest.raises(InputError, match="cache holds 2 rows"):
        model(torch.zeros(3, dtype=torch.long), [3], cache)
    with pytest.raises(InputError, match="cache holds 4"):
        model(torch.zeros(6, dtype=torch.long), [5, 1], cache)
    with pytest.raises(InputError, match="multiple of n_kv_heads"):
        TransformerConfig(dim=8, n_layers=1, head_dim=4, hidden_dim=8, n_heads=3, n_kv_heads=2, vocab_size=5)
    with pytest.raises(InputError, match="even"):
        TransformerConfig(dim=8, n_layers=1, head_dim=3, hidden_dim=8, n_heads=2, n_kv_heads=2, vocab_size=5)
