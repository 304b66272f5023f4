"""GSLM's dense readers (HuBERT, wav2vec 2.0, CPC, log-mel): the original's fixtures through conversion → weights=DIR
→ hubconf; parity with transformers' HubertModel / Wav2Vec2Model in the layouts the fixtures do not cover (HuBERT
Large with normalize and chunks, wav2vec 2.0 Large from a legacy ``args`` checkpoint, an omegaconf ``cfg``);
ragged batches; and the errors for bad audio and bad checkpoints."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
import transformers
from harness import ROOT, conversion_cli, load_case
from omegaconf import OmegaConf

import hubconf
from zoo.errors import AudioError, ConversionError, InputError
from zoo.formats import fairseq as fairseq_format
from zoo.models.cpc import CPC, CPCConfig, CpcFeatureReader
from zoo.models.hubert import HubertFeatureReader
from zoo.models.logmel import LogMelFeatureReader
from zoo.registry import find

HUBERT_CASE, CPC_CASE, LOGMEL_CASE = (load_case(f"gslm/{name}") for name in (
    "hubert_tiny_layer2", "cpc_tiny_layer2_fullfile", "logmel_80bins_1s"))
SPEECH = Path(__file__).parent / "data" / "librispeech-1272-128104-0000.flac"
HF_ATOL = 1e-4
#: Batched and unbatched runs use different conv / matmul shapes: they agree to float32 rounding.
BATCH_ATOL = 2e-5


def checkpoint(case) -> Path:
    return next(case.original.glob("*.pt"))


def assert_features(case, got: torch.Tensor, want: torch.Tensor | None = None) -> None:
    """``got`` is float32 and equals ``want`` (default: the case's features) within the case's tolerance."""
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, case.io["features"] if want is None else want, **case.tolerance("features"))


@pytest.fixture(scope="module")
def hubert_dir(convert) -> Path:
    return convert("hubert", checkpoint(HUBERT_CASE))


@pytest.fixture(scope="module")
def cpc_dir(convert) -> Path:
    return convert("cpc", checkpoint(CPC_CASE))


# ------------------------------------------------------------------------------------------ the original's fixtures
def test_hubert_fixture(hubert_dir):
    io = HUBERT_CASE.io
    reader = hubconf.hubert_feature_reader(layer=2, max_chunk=1_600_000, weights=hubert_dir)
    for got in (reader.get_feats(str(HUBERT_CASE.path / "input.flac")), reader.get_feats(io["wav"]), reader(io["wav"]),
                hubconf.gslm_feature_reader("hubert", layer=2, weights=hubert_dir).get_feats(io["wav"])):
        assert_features(HUBERT_CASE, got)
    # every block, with the original's 1-based indexing: -1, 0 and > N all give the last block
    blocks = io["intermediate_layer_outputs"]
    for layer, want in [(1, blocks[0]), (3, blocks[2]), (-1, blocks[2]), (0, blocks[2])]:
        assert_features(HUBERT_CASE, HubertFeatureReader(reader.model, layer)(io["wav"]), want)
    with pytest.warns(UserWarning, match="output layer 7 of a 3-block encoder"):
        assert_features(HUBERT_CASE, HubertFeatureReader(reader.model, 7)(io["wav"]), blocks[2])
    conv, _ = reader.model.feature_extractor(io["wav"][None])
    torch.testing.assert_close(conv[0].T, io["intermediate_conv_features"], atol=1e-5, rtol=1e-5)


def test_cpc_fixture(cpc_dir):
    io = CPC_CASE.io
    opts = {k: CPC_CASE.meta["config"]["reader"][k]
            for k in ("layer", "use_encoder_layer", "norm_features", "max_chunk")}
    reader = hubconf.cpc_feature_reader(**opts, weights=cpc_dir)
    assert reader.model.config.num_layers == 2 and len(io["features"]) == 585
    for got in (reader.get_feats(str(CPC_CASE.path / "input.flac")), reader.get_feats(io["wav"]), reader(io["wav"]),
                hubconf.gslm_feature_reader("cpc", **opts, weights=cpc_dir)(io["wav"])):
        assert_features(CPC_CASE, got)
    # the whole-signal pass the tail comes from
    whole = CpcFeatureReader(reader.model, layer=2, max_chunk=len(io["wav"]))(io["wav"])
    assert_features(CPC_CASE, whole, io["intermediate_ar_output_full_signal"])
    encoded = CpcFeatureReader(reader.model, use_encoder_layer=True, max_chunk=len(io["wav"]))(io["wav"])
    assert_features(CPC_CASE, encoded, io["intermediate_encoded_full_signal"])


def test_logmel_fixture():
    io = LOGMEL_CASE.io
    reader = hubconf.logmel_feature_reader(num_mel_bins=80, frame_length=25.0)
    for got in (reader.get_feats(str(LOGMEL_CASE.path / "input.flac")), reader.get_feats(io["wav"]), reader(io["wav"]),
                hubconf.gslm_feature_reader("logmel").get_feats(io["wav"])):
        assert_features(LOGMEL_CASE, got)


# ------------------------------------------------------------------------------------------ CPC rules
def test_cpc_tail_rule_and_chunks():
    """Full chunks are encoded alone; the remainder is the end of a whole-signal pass (all of it when delta = 0)."""
    torch.manual_seed(0)
    model = CPC(CPCConfig(encoder_dim=16, ar_dim=12, num_layers=2)).eval()
    wav = torch.randn(3 * 3200 + 100)
    reader = CpcFeatureReader(model, layer=1, norm_features=True, max_chunk=3200)
    alone = [CpcFeatureReader(model, layer=1, norm_features=True, max_chunk=n) for n in (3200, len(wav))]
    chunks = [alone[0](wav[i: i + 3200]) for i in range(0, 9600, 3200)]
    whole = alone[1](wav)
    df = len(wav) // len(whole)
    assert (100 // df) == 0  # this remainder is shorter than one frame: delta = 0 keeps every whole-signal frame
    torch.testing.assert_close(reader(wav), torch.cat(chunks + [whole]), atol=1e-6, rtol=1e-6)
    shorter = wav[: 2 * 3200 + 1000]
    got = reader(shorter)
    whole = alone[1](shorter)
    delta = 1000 // (len(shorter) // len(whole))
    torch.testing.assert_close(got, torch.cat(chunks[:2] + [whole[-delta:]]), atol=1e-6, rtol=1e-6)


def test_cpc_layer_beyond_the_checkpoint_is_refused():
    model = CPC(CPCConfig(encoder_dim=8, ar_dim=8, num_layers=2))
    with pytest.raises(InputError, match="has 2 LSTM layers"):
        CpcFeatureReader(model, layer=3)


# ------------------------------------------------------------------------------------------ batches
def batch_of(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in wavs])
    return torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths


@pytest.mark.parametrize("kind", ["hubert", "hubert-chunked", "cpc", "logmel"])
def test_ragged_batch_equals_each_item_alone(kind, hubert_dir, cpc_dir):
    speech = torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])
    wavs = [speech[:20_000], speech[5_000:12_345], speech[30_000:47_000]]
    reader = {"hubert": lambda: hubconf.hubert_feature_reader(layer=3, weights=hubert_dir),
              "hubert-chunked": lambda: hubconf.hubert_feature_reader(layer=2, max_chunk=6_000, weights=hubert_dir),
              "cpc": lambda: hubconf.cpc_feature_reader(layer=2, max_chunk=6_400, weights=cpc_dir),
              "logmel": hubconf.logmel_feature_reader}[kind]()
    features, frames = reader(*batch_of(wavs))
    for row, wav in enumerate(wavs):
        alone = reader(wav)
        assert frames[row] == len(alone)
        torch.testing.assert_close(features[row, : len(alone)], alone, atol=BATCH_ATOL, rtol=BATCH_ATOL)
        assert not features[row, len(alone):].any()


# ------------------------------------------------------------------------------------------ transformers parity
def fairseq_state(hf: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers HubertModel / Wav2Vec2Model state dict under fairseq's names (spec'd mapping, inverted)."""
    rules = [("masked_spec_embed", "mask_emb"), ("feature_projection.projection", "post_extract_proj"),
             ("feature_projection.layer_norm", "layer_norm"), ("encoder.pos_conv_embed.conv", "encoder.pos_conv.0"),
             ("parametrizations.weight.original0", "weight_g"), ("parametrizations.weight.original1", "weight_v"),
             (".attention.", ".self_attn."), (".feed_forward.intermediate_dense", ".fc1"),
             (".feed_forward.output_dense", ".fc2")]
    out = {}
    for key, value in hf.state_dict().items():
        if key.startswith("feature_extractor.conv_layers."):
            key = key.replace(".conv.", ".0.").replace(".layer_norm.", ".2.1." if hf.config.feat_extract_norm ==
                                                       "layer" else ".2.")
        elif ".layers." in key and ".layer_norm." in key:
            key = key.replace(".layer_norm.", ".self_attn_layer_norm.")
        for old, new in rules:
            key = key.replace(old, new)
        out[key] = value.clone()
    return out


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def model_fields(hf_config, *, extractor: str) -> dict:
    conv = [(d, k, s) for d, k, s in zip(hf_config.conv_dim, hf_config.conv_kernel, hf_config.conv_stride)]
    return {"extractor_mode": extractor, "encoder_layers": hf_config.num_hidden_layers,
            "encoder_embed_dim": hf_config.hidden_size, "encoder_ffn_embed_dim": hf_config.intermediate_size,
            "encoder_attention_heads": hf_config.num_attention_heads, "activation_fn": "gelu",
            "layer_norm_first": hf_config.do_stable_layer_norm, "conv_feature_layers": repr(conv),
            "conv_bias": hf_config.conv_bias, "conv_pos": hf_config.num_conv_pos_embeddings,
            "conv_pos_groups": hf_config.num_conv_pos_embedding_groups, "dropout": 0.1}


def tiny_hf_config(cls, *, large: bool, kernel: int):
    return cls(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
               conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
               conv_bias=large, feat_extract_norm="layer" if large else "group", do_stable_layer_norm=large,
               num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=4, feat_proj_layer_norm=True)


def block_outputs(hf: torch.nn.Module, wav: torch.Tensor) -> list[torch.Tensor]:
    """Block L's raw output (index L − 1) for every L: hidden_states, except the last of a pre-LN model, which
    transformers returns normalised (read from a hook instead)."""
    captured = []
    hook = hf.encoder.layers[-1].register_forward_hook(
        lambda module, args, out: captured.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        hidden = hf(wav[None], output_hidden_states=True).hidden_states
    hook.remove()
    return [h[0] for h in hidden[1:-1]] + [captured[0][0]]


@pytest.fixture(scope="module")
def hubert_large_layout(tmp_path_factory, convert):
    """HuBERT Large layout (LayerNorm extractor, pre-LN, normalize) with an odd positional kernel, in a hydra
    checkpoint whose cfg is an omegaconf DictConfig."""
    hf = perturbed(transformers.HubertModel(tiny_hf_config(transformers.HubertConfig, large=True, kernel=15)))
    model = {"_name": "hubert", **model_fields(hf.config, extractor="layer_norm")}
    cfg = OmegaConf.create({"_name": None, "model": model,
                            "task": {"_name": "hubert_pretraining", "normalize": True, "sample_rate": 16000}})
    state = {**fairseq_state(hf), "label_embs_concat": torch.zeros(24, 16), "final_proj.weight": torch.zeros(16, 48),
             "final_proj.bias": torch.zeros(16)}
    path = tmp_path_factory.mktemp("hubert-large") / "hubert_large.pt"
    torch.save({"args": None, "cfg": cfg, "model": state, "extra_state": {"val_loss": np.float64(1.0)}}, path)
    return hf, convert("hubert", path)


@pytest.fixture(scope="module")
def w2v2_large_layout(tmp_path_factory, convert):
    """wav2vec 2.0 Large layout (LayerNorm extractor with conv bias, pre-LN) in a legacy ``args`` checkpoint with
    its quantizer tensors."""
    hf = perturbed(transformers.Wav2Vec2Model(tiny_hf_config(transformers.Wav2Vec2Config, large=True, kernel=16)))
    args = argparse.Namespace(arch="wav2vec2", task="audio_pretraining", normalize=True, sample_rate=16000,
                              **model_fields(hf.config, extractor="layer_norm"))
    state = {**fairseq_state(hf), "quantizer.vars": torch.zeros(1, 8, 4),
             "quantizer.weight_proj.weight": torch.zeros(8, 32), "quantizer.weight_proj.bias": torch.zeros(8),
             "project_q.weight": torch.zeros(8, 8), "project_q.bias": torch.zeros(8),
             "final_proj.weight": torch.zeros(8, 48), "final_proj.bias": torch.zeros(8)}
    path = tmp_path_factory.mktemp("w2v2") / "wav2vec_tiny.pt"
    torch.save({"args": args, "model": state, "optimizer_history": [{"num_updates": 1}]}, path)
    return hf, convert("wav2vec2", path), path


def test_hubert_large_normalize_chunks_and_last_layer(hubert_large_layout):
    hf, directory = hubert_large_layout
    wav = torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])[:9_000]
    reader = hubconf.hubert_feature_reader(layer=-1, max_chunk=3_200, weights=directory)
    assert reader.model.config.normalize and reader.model.config.layer_norm_first
    normalized = F.layer_norm(wav, wav.shape)  # over the whole utterance, before chunking
    expected = torch.cat([block_outputs(hf, normalized[i: i + 3_200])[-1] for i in range(0, 9_000, 3_200)])
    got = reader(wav)
    assert got.shape == (9 + 9 + 7, 48)  # chunks of 3200, 3200 and 2600 samples
    torch.testing.assert_close(got, expected, atol=HF_ATOL, rtol=HF_ATOL)
    blocks = block_outputs(hf, F.layer_norm(wav[:3_200], (3_200,)))
    for layer in (1, 2, 3):  # 1-based; no final LayerNorm even at the last block
        got = hubconf.hubert_feature_reader(layer=layer, weights=directory)(wav[:3_200])
        torch.testing.assert_close(got, blocks[layer - 1], atol=HF_ATOL, rtol=HF_ATOL)


def test_w2v2_large_layers_are_zero_based(w2v2_large_layout):
    hf, directory, _ = w2v2_large_layout
    wav = torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])[:10_000]  # 31 frames: odd
    blocks = block_outputs(hf, wav)  # no normalisation, whatever the task says
    for layer, block in [(0, 0), (1, 1), (2, 2), (-1, 2), (-3, 0)]:
        got = hubconf.w2v2_feature_reader(layer=layer, weights=directory)(wav)
        assert got.shape == (31, 48)
        torch.testing.assert_close(got, blocks[block], atol=HF_ATOL, rtol=HF_ATOL)
    with pytest.raises(InputError, match="0-based"):
        hubconf.w2v2_feature_reader(layer=3, weights=directory)


def test_w2v2_ragged_batch_equals_each_item_alone(w2v2_large_layout):
    _, directory, _ = w2v2_large_layout
    reader = hubconf.w2v2_feature_reader(layer=1, weights=directory)
    torch.manual_seed(3)
    wavs = [torch.randn(n) for n in (9_000, 4_321, 16_000)]
    features, frames = reader(*batch_of(wavs))
    for row, wav in enumerate(wavs):
        torch.testing.assert_close(features[row, : frames[row]], reader(wav), atol=BATCH_ATOL, rtol=BATCH_ATOL)


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def stereo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "stereo.wav"
    gen = np.random.default_rng(0)
    soundfile.write(path, gen.uniform(-0.5, 0.5, (16_000, 2)), 16_000, subtype="FLOAT")
    return path


def test_channels(stereo, hubert_dir):
    data = torch.from_numpy(soundfile.read(stereo)[0])
    hubert = hubconf.hubert_feature_reader(layer=2, weights=hubert_dir)
    # HuBERT, w2v2 and CPC average the channels in float64 when no channel is given, as the originals
    torch.testing.assert_close(hubert.get_feats(stereo), hubert(data.mean(-1).float()), atol=0, rtol=0)
    torch.testing.assert_close(hubert.get_feats(stereo, channel_id=2), hubert(data[:, 1].float()), atol=0, rtol=0)
    logmel = LogMelFeatureReader(num_mel_bins=40, frame_length=20.0)
    torch.testing.assert_close(logmel.get_feats(stereo, channel_id=2), logmel(data[:, 1].float()), atol=0, rtol=0)
    assert logmel.get_feats(stereo, channel_id=2).shape == (1 + (16_000 - 320) // 160, 40)
    with pytest.raises(AudioError, match="does not mix them down.*channel_id=1"):
        logmel.get_feats(stereo)
    for reader in (hubert, logmel):
        with pytest.raises(AudioError, match="channel_id=3 is out of range.*2 channels"):
            reader.get_feats(stereo, channel_id=3)
        with pytest.raises(AudioError, match="is mono"):
            reader.get_feats(SPEECH, channel_id=1)


def test_audio_not_at_16khz(tmp_path, hubert_dir, cpc_dir):
    path = tmp_path / "8k.wav"
    soundfile.write(path, np.zeros(8_000), 8_000)
    for reader in (hubconf.hubert_feature_reader(layer=1, weights=hubert_dir),
                   hubconf.cpc_feature_reader(weights=cpc_dir)):
        with pytest.raises(AudioError, match="8000 Hz.*does not resample.*sample_rate=16000"):
            reader.get_feats(path)
    # the log-mel reader computes its filterbank at the file's rate, as the original
    assert hubconf.logmel_feature_reader().get_feats(path).shape == (1 + (8_000 - 200) // 80, 80)


def test_bad_waveforms(hubert_dir):
    reader = hubconf.hubert_feature_reader(layer=1, weights=hubert_dir)
    with pytest.raises(AudioError, match="fewer than the 400"):
        reader(torch.zeros(399))
    with pytest.raises(AudioError, match="float waveform"):
        reader(torch.zeros(2, 2, 1000))
    with pytest.raises(InputError, match="lengths"):
        reader(torch.zeros(2, 1000), torch.tensor([1000, 2000]))
    with pytest.raises(InputError, match="channel_id selects a channel of a file"):
        reader.get_feats(torch.zeros(1000), channel_id=1)


def test_checkpoint_of_another_model(w2v2_large_layout, tmp_path):
    _, _, w2v2_pt = w2v2_large_layout
    result = conversion_cli("hubert", w2v2_pt, "--out", tmp_path / "x")
    assert result.returncode == 2 and "'wav2vec2' model" in result.stderr and "conversion wav2vec2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    result = conversion_cli("cpc", w2v2_pt, "--out", tmp_path / "y")
    assert result.returncode == 2 and "outside the allowlist of this format" in result.stderr
    with pytest.raises(ConversionError, match="is not a fairseq checkpoint"):
        fairseq_format.load_checkpoint(checkpoint(CPC_CASE))


@pytest.mark.parametrize("kind", ["hubert", "cpc"])
def test_truncated_checkpoint(kind, tmp_path):
    src = checkpoint(HUBERT_CASE if kind == "hubert" else CPC_CASE)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    result = conversion_cli(kind, truncated, "--out", tmp_path / "out")
    assert result.returncode == 2 and ("truncated" in result.stderr or "cannot read" in result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_a_pickle_outside_the_allowlist_runs_nothing(tmp_path):
    payload = _Payload()
    payload.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"args": argparse.Namespace(arch="hubert"), "model": {}, "extra": payload}, path)
    with pytest.raises(ConversionError, match="never holds"):
        fairseq_format.load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_fairseq_stand_ins_keep_state_without_fairseq():
    """task_state's Dictionary is read into an inert stand-in (fairseq is not importable here)."""
    assert "fairseq" not in sys.modules
    container = fairseq_format.load_checkpoint(checkpoint(HUBERT_CASE))
    (dictionary,) = container["task_state"]["dictionaries"]
    assert isinstance(dictionary, fairseq_format.Stub) and len(dictionary.state["symbols"]) == 24
    model, task = fairseq_format.checkpoint_config(container, "hubert")
    assert model["_name"] == "hubert" and task["normalize"] is False


def test_transformers_directories(convert, tmp_path):
    """``python -m conversion hubert|wav2vec2 DIR`` reads a transformers save_pretrained directory; the other
    kind's directory is refused."""
    hf = perturbed(transformers.HubertModel(tiny_hf_config(transformers.HubertConfig, large=False, kernel=16)))
    hf.save_pretrained(tmp_path / "hf-hubert")
    wav = torch.from_numpy(soundfile.read(SPEECH, dtype="float32")[0])[:7_000]
    reader = hubconf.hubert_feature_reader(layer=2, weights=convert("hubert", tmp_path / "hf-hubert"))
    torch.testing.assert_close(reader(wav), block_outputs(hf, wav)[1], atol=HF_ATOL, rtol=HF_ATOL)
    result = conversion_cli("wav2vec2", tmp_path / "hf-hubert", "--out", tmp_path / "out")
    assert result.returncode == 2 and "'hubert' model, not transformers' 'wav2vec2'" in result.stderr


def test_torch_hub_load_from_the_loopback_hub(hubert_dir, cpc_dir, loopback_hub):
    """The registry's repos, served by a loopback Hub, through ``torch.hub.load`` of this checkout."""
    wav = HUBERT_CASE.io["wav"]
    loopback_hub.add_repo(find("hubert_feature_reader", checkpoint="hubert-base-ls960").repo_id, hubert_dir)
    loopback_hub.add_repo(find("cpc_feature_reader", checkpoint="cpc-big-ll6k").repo_id, cpc_dir)
    reader = torch.hub.load(str(ROOT), "hubert_feature_reader", layer=2, source="local", progress=False)
    assert_features(HUBERT_CASE, reader.get_feats(wav))
    cpc = torch.hub.load(str(ROOT), "gslm_feature_reader", "cpc", layer=2, source="local", progress=False)
    assert_features(CPC_CASE, cpc(CPC_CASE.io["wav"]))
    assert sum("/resolve/" in r for r in loopback_hub.requests) >= 4
