"""SpeechDLM (dGSLM) speed on CPU: the forward pass and 20 s of dialogue generation, side by side with references.

    python -m benchmarks.bench_speech_dlm [--steps 1000] [--rerun-steps 200] [--batch-sizes 1 8] [--threads 2]

Base configuration (6 layers, the last 4 cross-channel, 512 wide, FFN 2048, 8 heads, 504 symbols, duration head,
tied output), random weights (speed does not depend on their values), float32.

1. Forward of 2 channels × 500 tokens, B = 1: speechzoo's model vs a faithful re-implementation of fairseq's
   ``CrossChannelTransformerDecoder`` forward with the same weights — per-channel Python loops over T×B×C tensors,
   ``F.multi_head_attention_forward`` with separate q/k/v weights and fairseq's additive ``-inf`` future mask, as
   fairseq's ``MultiheadAttention`` calls it for full sequences — and the original's own timing from
   ``perf-anchors.md`` row 7 (0.385 s median, same machine type, idle).
2. Generation of ``--steps`` units per channel (``max_len_b``; prompt: one unit), sampling with beam 1, batch 1
   and 8: KV-cached incremental decoding vs a loop that re-runs every hypothesis' whole prefix at each step (what
   a port without incremental state does; same numbers). The re-run loop is quadratic, so it is timed over the
   first ``--rerun-steps`` steps, and the cached decoder over the same steps too.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from benchmarks.timing import timed, timings
from zoo.models.speech_dlm import (
    CrossChannelLayer,
    SpeechDLM,
    SpeechDLMConfig,
    SpeechDLMHubInterface,
    _options,
    generate_batch,
)
from zoo.nn.fairseq_transformer import make_positions

ORIGINAL_FORWARD_S = 0.385   # perf-anchors.md row 7: fairseq SpeechDLM forward, 2 × 500 tokens, median


def fairseq_forward(model: SpeechDLM, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq's forward, step by step as ``speech_dlm_decoder.py`` / ``speech_dlm_decoder_layer.py`` do it."""
    channels = model.channels
    mask = torch.triu(torch.full((tokens[channels[0]].shape[1],) * 2, float("-inf")), 1)

    def mha(attn, query, key):
        return F.multi_head_attention_forward(
            query, key, key, attn.q_proj.in_features, attn.heads, torch.empty([0]),
            torch.cat((attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias)), None, None, False, 0.0,
            attn.out_proj.weight, attn.out_proj.bias, training=False, key_padding_mask=None, need_weights=False,
            attn_mask=mask, use_separate_proj_weight=True, q_proj_weight=attn.q_proj.weight,
            k_proj_weight=attn.k_proj.weight, v_proj_weight=attn.v_proj.weight)[0]

    xs = []
    for ch in channels:
        t = tokens[ch]
        x = model.embed_scale * model.embed_tokens(t) + model.embed_positions(make_positions(t, 1))
        xs.append(x.transpose(0, 1))
    for layer in model.layers:
        ys = []
        for x in xs:
            h = layer.self_attn_layer_norm(x)
            ys.append(x + mha(layer.self_attn, h, h))
        if isinstance(layer, CrossChannelLayer):
            zs = []
            for i, y in enumerate(ys):
                other = torch.cat([ys[(i + j) % len(ys)] for j in range(1, len(ys))], 0)
                zs.append(y + mha(layer.cross_channel_attn, layer.cross_channel_attn_layer_norm(y), other))
            ys = zs
        xs = [y + layer.fc2(layer.activation(layer.fc1(layer.final_layer_norm(y)))) for y in ys]
    return {ch: model.output_projection[0](model.layer_norm(x).transpose(0, 1)) for ch, x in zip(channels, xs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="units generated per channel")
    parser.add_argument("--rerun-steps", type=int, default=200, help="steps over which the re-run loop is timed")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SpeechDLM(SpeechDLMConfig()).eval()
    hub = SpeechDLMHubInterface(model)
    print(f"SpeechDLM base: {sum(p.numel() for p in set(model.parameters())):,} parameters, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")

    tokens = {ch: torch.cat([torch.tensor([[2]]), torch.randint(4, 504, (1, 499))], 1) for ch in model.channels}
    with torch.inference_mode():
        ours, reference = model(tokens)[0], fairseq_forward(model, tokens)
        diff = max((ours[ch][ch]["pred_token"] - reference[ch]).abs().max().item() for ch in model.channels)
        ours_t, ref_t = [(min(t), statistics.median(t)) for t in
                         timings(lambda: model(tokens), lambda: fairseq_forward(model, tokens), repeats=args.repeats)]
    print("Forward, 2 channels x 500 tokens, B=1          min s   median s")
    print(f"  speechzoo                                      {ours_t[0]:6.3f}   {ours_t[1]:6.3f}")
    print(f"  fairseq's algorithm (same run, same weights)   {ref_t[0]:6.3f}   {ref_t[1]:6.3f}")
    print(f"  original fairseq (perf-anchors row 7)           0.382    {ORIGINAL_FORWARD_S:.3f}")
    print(f"  max |logit difference| to the re-implementation: {diff:.1e}\n")

    print("Generation, sampling, beam 1, prompt of 1 unit      steps   seconds   units/s per channel")
    for batch in args.batch_sizes:
        prompts = [torch.tensor([[7, 9]])] * batch
        for label, steps, cache in (("KV cache", args.steps, True), ("KV cache", args.rerun_steps, True),
                                    ("re-run prefix", args.rerun_steps, False)):
            options = _options(model, 1, {"sampling": True, "max_len_b": steps})
            torch.manual_seed(0)
            with torch.inference_mode():
                seconds, _ = timed(lambda: generate_batch(model, prompts, options, use_cache=cache))
            print(f"  B={batch:<2} {label:<14}                         {steps:5d}   {seconds:7.2f}   "
                  f"{batch * steps / seconds:9.1f}")
    del hub


if __name__ == "__main__":
    main()
