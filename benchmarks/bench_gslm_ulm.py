"""GSLM unit LM generation speed on CPU: speechzoo's KV cache vs two references in the same run.

The model is the released size (fairseq ``transformer_lm_big``: 12 pre-LN layers, width 1024, 16 heads, FFN 4096;
K = 100 units → 104 dictionary ids) with random weights. Each run is ``ulm/sample.py --sampling --temperature 0.7
--prefix-size -1`` on one 10-unit prompt with ``--samples-per-prompt`` 1 or 10, continued by 500 units
(``max_len_b`` = 510 and ``min_len`` = 510, so that random weights cannot stop early). The search is the same in
all three columns (:func:`zoo.nn.sequence_generator.generate`, fairseq's algorithm); only the decoder differs:

* **speechzoo**: :class:`~zoo.nn.fairseq_transformer.KVCache` — buffers allocated once, the prompt run as one
  forward pass, rows copied only when the beam order changes, fused ``scaled_dot_product_attention``.
* **fairseq incremental** (the original's algorithm, re-implemented below): what ``sample.py``'s
  ``SequenceGenerator`` does with fairseq's ``incremental_state`` — the prompt fed one token per step, each layer's
  keys/values ``torch.cat``-ed onto the cached ones at every step, every layer's cache ``index_select``-ed by the
  beam order after every step (``reorder_incremental_state``, also when the order is the identity), attention as
  ``bmm`` → float32 ``softmax`` → ``bmm`` on ``q · head_dim^-0.5``, time-major tensors as fairseq's.
* **no cache**: every step re-runs the whole sequence (what the incremental state avoids).

    python -m benchmarks.bench_gslm_ulm                       # 500 units, batch 1 and 10 (the no-cache runs are long)
    python -m benchmarks.bench_gslm_ulm --tokens 100 --skip-rerun
    python -m benchmarks.bench_gslm_ulm --quick               # 2 layers, 16 units: only to see that it runs
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.timing import timed
from zoo.models.gslm_ulm import GSLMUnitLM, GSLMUnitLMConfig
from zoo.nn.dictionary import FairseqDictionary
from zoo.nn.sequence_generator import IncrementalDecoder, generate

THREADS = 2
VOCAB_SIZE = 100          # K; the dictionary has 4 more ids
PROMPT_UNITS = 10
TEMPERATURE = 0.7         # the GSLM README's sampling command
RELEASED_LAYERS = 12
SEED = 1


class FairseqIncrementalDecoder:
    """fairseq's ``TransformerDecoder`` with ``incremental_state`` (see the module docstring), on the same weights."""

    def __init__(self, model: GSLMUnitLM) -> None:
        self.model = model
        self.saved: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(model.layers)
        self.steps = 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != 1:
            raise ValueError("fairseq's incremental decoder takes one token per step")
        m = self.model
        self.steps += 1
        position = m.embed_positions(torch.tensor(m.padding_idx + self.steps))  # one row for every sequence
        x = (m.embed_scale * m.embed_tokens(tokens) + position).transpose(0, 1)  # (1, B, C), time-major
        for i, layer in enumerate(m.layers):
            x = x + self._attention(i, layer.self_attn, layer.self_attn_layer_norm(x))
            x = x + layer.fc2(layer.activation(layer.fc1(layer.final_layer_norm(x))))
        if m.layer_norm is not None:
            x = m.layer_norm(x)
        return F.linear(x, m.embed_tokens.weight).transpose(0, 1)

    def _attention(self, i: int, attn, x: torch.Tensor) -> torch.Tensor:
        _, bsz, dim = x.shape
        heads, head_dim = attn.heads, attn.head_dim
        q = attn.q_proj(x) * head_dim ** -0.5
        q = q.contiguous().view(1, bsz * heads, head_dim).transpose(0, 1)
        k = attn.k_proj(x).contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
        v = attn.v_proj(x).contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
        if self.saved[i] is not None:  # prev_key / prev_value: (bsz, heads, T, head_dim)
            prev_k, prev_v = self.saved[i]
            k = torch.cat([prev_k.view(bsz * heads, -1, head_dim), k], dim=1)
            v = torch.cat([prev_v.view(bsz * heads, -1, head_dim), v], dim=1)
        self.saved[i] = (k.view(bsz, heads, -1, head_dim), v.view(bsz, heads, -1, head_dim))
        weights = torch.bmm(q, k.transpose(1, 2))
        weights = F.softmax(weights.float(), dim=-1).type_as(weights)
        out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(1, bsz, dim)
        return attn.out_proj(out)

    def reorder(self, order: torch.Tensor) -> None:
        self.saved = [None if s is None else (s[0].index_select(0, order), s[1].index_select(0, order))
                      for s in self.saved]


def released_model(layers: int) -> GSLMUnitLM:
    symbols = FairseqDictionary.SPECIALS + tuple(str(u) for u in range(VOCAB_SIZE))
    model = GSLMUnitLM(GSLMUnitLMConfig(symbols=symbols, layers=layers)).eval()  # transformer_lm_big defaults
    # fairseq's Embedding init, N(0, 1/dim): with unit variance the tied logits are so peaked that the forced prompt
    # tokens get probability 0 in float32
    torch.nn.init.normal_(model.embed_tokens.weight, std=model.config.embed_dim ** -0.5)
    return model


#: name → (decoder factory, prefill the prompt in one pass)
Decoders = dict[str, tuple[Callable[[int, int], IncrementalDecoder], bool]]


def decoders(model: GSLMUnitLM) -> Decoders:
    return {
        "speechzoo": (lambda rows, length: model.incremental_decoder(rows, length), True),
        "fairseq incremental": (lambda rows, length: FairseqIncrementalDecoder(model), False),
        "no cache": (lambda rows, length: model.incremental_decoder(rows, length, use_cache=False), True),
    }


def run(model: GSLMUnitLM, decoder: tuple, samples: int, units: int) -> tuple[float, torch.Tensor]:
    """Seconds for ``sample.py --sampling --samples-per-prompt samples`` adding ``units`` units, and the units."""
    new_decoder, prefill = decoder
    prompt = torch.randint(4, 4 + VOCAB_SIZE, (1, PROMPT_UNITS), generator=torch.Generator().manual_seed(0))
    max_len = PROMPT_UNITS + units
    with torch.inference_mode():
        elapsed, hypos = timed(lambda: generate(
            new_decoder, prompt, vocab_size=len(model.dictionary), max_len=max_len, min_len=max_len,
            beam_size=samples, sampling=True, temperature=TEMPERATURE, prefill=prefill,
            generator=torch.Generator().manual_seed(SEED)))
    return elapsed, torch.stack([h["tokens"] for h in hypos[0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, 16 units: a smoke run")
    parser.add_argument("--tokens", type=int, help="units generated after the prompt (default 500; 16 with --quick)")
    parser.add_argument("--batches", default="1,10", help="--samples-per-prompt values, comma-separated")
    parser.add_argument("--skip-rerun", action="store_true", help="leave out the (slow) no-cache column")
    args = parser.parse_args()
    units = args.tokens or (16 if args.quick else 500)
    layers = 2 if args.quick else RELEASED_LAYERS
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = released_model(layers)
    impls = decoders(model)
    if args.skip_rerun:
        del impls["no cache"]

    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, transformer_lm_big with {layers} "
          f"layers (random weights), {PROMPT_UNITS}-unit prompt + {units} sampled units, T={TEMPERATURE}\n")
    print("| samples per prompt | " + " | ".join(f"{name} (s, units/s)" for name in impls)
          + " | speed-up vs fairseq incremental | vs no cache | same units |")
    print("|---" * (len(impls) + 4) + "|")
    for samples in (int(b) for b in args.batches.split(",")):
        run(model, impls["speechzoo"], samples, 4)  # warm-up: allocator, kernels
        times, outputs = {}, {}
        for name, decoder in impls.items():
            times[name], outputs[name] = run(model, decoder, samples, units)
        cells = [f"{t:.1f} s, {samples * units / t:.1f}" for t in times.values()]
        rerun = f"{times['no cache'] / times['speechzoo']:.1f}×" if "no cache" in times else "—"
        same = all(torch.equal(o, outputs["speechzoo"]) for o in outputs.values())
        if not same:  # float differences of the attention kernels can flip a draw; say how many units agree
            agree = [float((o == outputs["speechzoo"]).double().mean()) for o in outputs.values()]
            same_text = "no: " + ", ".join(f"{a:.0%}" for a in agree)
        else:
            same_text = "yes"
        print(f"| {samples} | " + " | ".join(cells)
              + f" | {times['fairseq incremental'] / times['speechzoo']:.2f}× | {rerun} | {same_text} |", flush=True)


if __name__ == "__main__":
    main()
