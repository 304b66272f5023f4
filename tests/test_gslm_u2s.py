"""GSLM unit-to-speech: Tacotron2, WaveGlow, the denoiser, their converters and entry points.

Numbers against the ORIGINAL code come from tests/fixtures/gslm_u2s (fairseq's unit2speech Tacotron2 and textlesslib's
standalone WaveGlow, float32, with every random draw recorded). What the fixture does not show is checked by
properties that follow from it: a batch equals its rows decoded alone, decoding cut by ``max_decoder_steps`` is a
prefix of the full decoding, both WaveGlow containers give the same model, half precision stays close to float32.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import types
import warnings
from contextlib import contextmanager
from pathlib import Path

import easydict
import pytest
import torch

import hubconf
import zoo.download
from zoo.errors import ConversionError, InputError, WeightsError
from zoo.formats import tacotron2 as tacotron2_format
from zoo.formats import waveglow as waveglow_format
from zoo.models.tacotron2 import WEIGHTS as TACOTRON2_WEIGHTS
from zoo.models.tacotron2 import Tacotron2, Tacotron2Config
from zoo.models.waveglow import WaveGlowDenoiser
from zoo.registry import SourceFile, Weights, find

from benchmarks.references import gslm_u2s as reference
from harness import Case, conversion_cli, load_case

CASE = "gslm_u2s/tiny_sos_eos_collapse_gate_stop"
ORIGINAL = load_case(CASE).original
META = load_case(CASE).meta
TACO_TOL = META["tolerance"]["tacotron2"]
AUDIO_TOL = META["tolerance"]["audio"]
#: Rows of a batch and their one-by-one runs differ by float rounding only.
BATCH_ATOL = 1e-5


def convert_case(convert, case: Case) -> dict[str, Path]:
    """A case's checkpoints converted by the CLI, as the acceptance check does."""
    return {"tacotron2": convert("tacotron2", case.original / "tts_checkpoint_best.pt", case.original / "code_dict"),
            "waveglow": convert("waveglow", next(case.original.glob("waveglow*.pt")))}


@pytest.fixture(scope="module")
def io():
    return load_case(CASE).io


@pytest.fixture(scope="module")
def converted(convert) -> dict[str, Path]:
    return convert_case(convert, load_case(CASE))


@pytest.fixture(scope="module")
def taco(converted):
    return hubconf.tacotron2(weights=converted["tacotron2"], max_decoder_steps=META["call"]["max_decoder_steps"])


@pytest.fixture(scope="module")
def wg(converted):
    return hubconf.waveglow(weights=converted["waveglow"])


def masks_of(io) -> torch.Tensor:
    return io["prenet_masks"].bool()


def _tiny_sizes() -> dict[str, int]:
    return {"symbols_embedding_dim": 16, "encoder_embedding_dim": 16, "n_mel_channels": 6, "attention_rnn_dim": 24,
            "decoder_rnn_dim": 24, "prenet_dim": 16, "attention_dim": 12, "attention_location_n_filters": 4,
            "attention_location_kernel_size": 7, "postnet_embedding_dim": 16}


# ------------------------------------------------------------------------------------------ original numbers
@pytest.mark.cases("gslm_u2s/*")
@torch.no_grad()
def test_unit_to_speech_matches_original(case, convert):
    """Each stage fed the original's recorded input, as check_reference.py does; then the whole chain from units."""
    dirs, call, io = convert_case(convert, case), case.meta["call"], case.io
    taco = hubconf.tacotron2(weights=dirs["tacotron2"], max_decoder_steps=call["max_decoder_steps"])
    assert torch.equal(taco.encode(call["units"]), io["input_ids"])
    mel, mel_postnet, gate, alignments, has_eos = taco.inference(io["input_ids"][None], ret_has_eos=True,
                                                                 prenet_dropout_masks=masks_of(io))
    for name, got in (("mel_outputs", mel), ("mel_outputs_postnet", mel_postnet), ("gate_outputs", gate),
                      ("alignments", alignments)):
        torch.testing.assert_close(got, io[name], **case.tolerance("tacotron2"), msg=name)
    assert has_eos == bool(io["has_eos"].item()) and mel.shape[-1] == io["mel_outputs"].shape[-1]
    encoder = taco.encoder(taco.embedding(io["input_ids"][None]).transpose(1, 2), None)
    torch.testing.assert_close(encoder, io["encoder_outputs"], **case.tolerance("tacotron2"))

    wg = hubconf.waveglow(weights=dirs["waveglow"])
    case.assert_close("audio", wg.infer(io["mel_outputs_postnet"], sigma=call["sigma"], noise=io["waveglow_noise"]))
    den = hubconf.waveglow_denoiser(wg)
    torch.testing.assert_close(den.bias_spec, io["denoiser_bias_spec"], **case.tolerance("audio_denoised"))
    denoised = den(io["audio"], strength=call["denoiser_strength"])
    assert denoised.shape == (1, 1, io["audio"].shape[1])
    case.assert_close("audio_denoised", denoised[:, 0])

    # units → ids → mel → audio → denoised, each stage fed by the previous one (the recorded draws replayed)
    _, mel, _, _ = taco.inference(taco.encode(call["units"])[None], prenet_dropout_masks=masks_of(io))
    audio = wg.infer(mel, sigma=call["sigma"], noise=io["waveglow_noise"])
    case.assert_close("audio_denoised", den(audio, strength=call["denoiser_strength"])[:, 0])


# ------------------------------------------------------------------------------------------ encode
def test_encode_follows_code_dict_semantics(taco):
    ids = taco.config.code_to_id          # code_dict "7 3 11 0 5 9 1 10 2 8 4 6": line i -> id i + 1
    assert (ids["_"], ids["7"], ids["6"], ids["<s>"], ids["</s>"]) == (0, 1, 12, 13, 14)
    # collapse: a code is emitted when it differs from the last EMITTED one, so an unknown code does not break a run
    assert taco.encode("5 99 5 5 3").tolist() == [13, ids["5"], ids["3"], 14]
    assert taco.encode([5, 99, 5]).tolist() == taco.encode(torch.tensor([5, 99, 5])).tolist() == [13, ids["5"], 14]
    plain = Tacotron2(Tacotron2Config(codes=taco.config.codes, add_sos=False, add_eos=True, collapse_code=False,
                                      **_tiny_sizes()))
    assert plain.config.code_to_id["</s>"] == 13          # no <s>: </s> takes the next id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plain.encode("5 5 3").tolist() == [ids["5"], ids["5"], ids["3"], 13]
    with pytest.warns(UserWarning, match="not in this model's code_dict"):
        assert plain.encode("5 99 5 42").tolist() == [ids["5"], ids["5"], 13]


def test_encode_rejects_units_of_another_quantizer(taco):
    with pytest.raises(InputError, match="none of the 3 units"):
        taco.encode("50 51 52")
    with pytest.raises(InputError, match="1-D integer"):
        taco.encode(torch.tensor([[1, 2]]))


# ------------------------------------------------------------------------------------------ decoding
@torch.no_grad()
def test_max_decoder_steps_cuts_a_prefix(converted, io):
    short = hubconf.tacotron2(weights=converted["tacotron2"], max_decoder_steps=5)
    mel, _, gate, alignments, has_eos = short.inference(io["input_ids"][None], ret_has_eos=True,
                                                        prenet_dropout_masks=masks_of(io))
    assert has_eos is False and mel.shape[-1] == 5
    torch.testing.assert_close(mel, io["mel_outputs"][..., :5], **TACO_TOL)
    torch.testing.assert_close(gate, io["gate_outputs"][:, :5], **TACO_TOL)
    torch.testing.assert_close(alignments, io["alignments"][:, :5], **TACO_TOL)


@torch.no_grad()
def test_prenet_masks_must_cover_every_step(taco, io):
    with pytest.raises(InputError, match="holds 10 decoder steps"):
        taco.inference(io["input_ids"][None], prenet_dropout_masks=masks_of(io)[:10])
    with pytest.raises(InputError, match="prenet_dropout_masks must be"):
        taco.inference(io["input_ids"][None], prenet_dropout_masks=masks_of(io)[:, :, :, :3])


@torch.no_grad()
def test_generator_seeds_the_prenet_dropout(taco, io):
    ids = io["input_ids"][None]
    first = taco.inference(ids, generator=torch.Generator().manual_seed(3))[1]
    again = taco.inference(ids, generator=torch.Generator().manual_seed(3))[1]
    other = taco.inference(ids, generator=torch.Generator().manual_seed(4))[1]
    assert torch.equal(first, again)
    assert first.shape != other.shape or not torch.allclose(first, other)


@torch.no_grad()
def test_a_batch_equals_its_rows_alone(converted, io):
    """Right-padded rows of different lengths: each row's frames are those it gets alone with the same masks. The
    first row replays the recorded masks, so it stops on its gate at step 14 as in the fixture."""
    steps = 30
    taco = hubconf.tacotron2(weights=converted["tacotron2"], max_decoder_steps=steps)
    full = io["input_ids"]
    rows = [full, full[:9], torch.cat((full[:1], full[5:]))]
    masks = torch.rand(steps, 2, len(rows), taco.config.prenet_dim, generator=torch.Generator().manual_seed(0)) < 0.5
    masks[:14, :, 0] = masks_of(io)[:, :, 0]
    batched = taco.infer_batch(rows, prenet_dropout_masks=masks)
    for b, row in enumerate(rows):
        _, alone, _, _, has_eos = taco.inference(row[None], ret_has_eos=True, prenet_dropout_masks=masks[:, :, b:b + 1])
        assert batched[b].mel.shape == alone[0].shape and batched[b].has_eos == has_eos
        torch.testing.assert_close(batched[b].mel, alone[0], atol=BATCH_ATOL, rtol=0)
    assert batched[0].has_eos and batched[0].mel.shape[-1] == 14
    torch.testing.assert_close(batched[0].mel, io["mel_outputs_postnet"][0], **TACO_TOL)
    assert len({m.mel.shape[-1] for m in batched}) == len(rows), "the rows should stop at different steps"


@torch.no_grad()
def test_a_waveglow_batch_equals_its_rows_alone(wg, io):
    mel = io["mel_outputs_postnet"]
    rows = [mel, mel[..., :9] * 0.5]
    padded = torch.nn.utils.rnn.pad_sequence([m[0].T for m in rows], batch_first=True).transpose(1, 2)
    noise = torch.randn(2, 8, padded.shape[-1] * 32, generator=torch.Generator().manual_seed(1))
    batched = wg.infer(padded, sigma=0.666, noise=noise, lengths=[14, 9])
    for b, m in enumerate(rows):
        n = m.shape[-1] * 256
        alone = wg.infer(m, sigma=0.666, noise=noise[b:b + 1, :, : n // 8])
        torch.testing.assert_close(batched[b:b + 1, :n], alone, atol=BATCH_ATOL, rtol=0)
        assert not batched[b, n:].any()


@torch.no_grad()
def test_generator_seeds_the_waveglow_latent(wg, io):
    mel = io["mel_outputs_postnet"]
    first = wg.infer(mel, sigma=0.666, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, wg.infer(mel, sigma=0.666, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(first, wg.infer(mel, sigma=0.666, generator=torch.Generator().manual_seed(6)))


# ------------------------------------------------------------------------------------------ half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_half_precision_is_finite_and_close(converted, io, dtype):
    """The originals run both models in fp16; here both half types on CPU, with the recorded draws."""
    taco = hubconf.tacotron2(weights=converted["tacotron2"]).to(dtype)
    _, mel, _, _ = taco.inference(io["input_ids"][None], prenet_dropout_masks=masks_of(io))
    assert mel.dtype == dtype and bool(torch.isfinite(mel).all())
    steps = min(mel.shape[-1], io["mel_outputs_postnet"].shape[-1])
    torch.testing.assert_close(mel[..., :steps].float(), io["mel_outputs_postnet"][..., :steps], atol=0.1, rtol=0.05)
    wg = hubconf.waveglow(weights=converted["waveglow"]).to(dtype)
    audio = wg.infer(io["mel_outputs_postnet"], sigma=0.666, noise=io["waveglow_noise"])
    assert audio.dtype == dtype and bool(torch.isfinite(audio).all())
    torch.testing.assert_close(audio.float(), io["audio"], atol=0.05, rtol=0.05)
    denoised = hubconf.waveglow_denoiser(wg)(audio, strength=0.1)
    assert denoised.dtype == torch.float32 and bool(torch.isfinite(denoised).all())


# ------------------------------------------------------------------------------------------ converters
def test_easydict_hparams_convert_alike(tmp_path, io):
    """Checkpoints whose hparams are an EasyDict (a dict subclass) convert without running easydict's code."""
    checkpoint = torch.load(ORIGINAL / "tts_checkpoint_best.pt", weights_only=False)
    checkpoint["hparams"] = easydict.EasyDict(vars(checkpoint["hparams"]))
    torch.save(checkpoint, tmp_path / "tts.pt")
    from_easydict = tacotron2_format.convert([tmp_path / "tts.pt", ORIGINAL / "code_dict"])
    from_namespace = tacotron2_format.convert([ORIGINAL / "tts_checkpoint_best.pt", ORIGINAL / "code_dict"])
    assert from_easydict.config == from_namespace.config
    for (name, a), b in zip(from_easydict.state_dict().items(), from_namespace.state_dict().values()):
        assert torch.equal(a, b), name


def test_tacotron2_converter_refuses_what_it_cannot_read(tmp_path):
    checkpoint = torch.load(ORIGINAL / "tts_checkpoint_best.pt", weights_only=False)
    text_model = argparse.Namespace(**{**vars(checkpoint["hparams"]), "text_or_code": "text"})
    torch.save({**checkpoint, "hparams": text_model}, tmp_path / "text.pt")
    with pytest.raises(ConversionError, match="text Tacotron2"):
        tacotron2_format.convert([tmp_path / "text.pt", ORIGINAL / "code_dict"])
    (tmp_path / "dup").write_text("1\n2\n1\n")
    with pytest.raises(ConversionError, match="repeats"):
        tacotron2_format.convert([ORIGINAL / "tts_checkpoint_best.pt", tmp_path / "dup"])
    (tmp_path / "short").write_text("1\n2\n")   # fewer codes than the checkpoint has symbols: still loads
    assert tacotron2_format.convert([ORIGINAL / "tts_checkpoint_best.pt", tmp_path / "short"]).config.codes == ("1", "2")
    with pytest.raises(ConversionError, match="not a Tacotron2 checkpoint"):
        tacotron2_format.convert([ORIGINAL / "waveglow_standalone.pt", ORIGINAL / "code_dict"])
    with pytest.raises(ConversionError, match="argparse.Namespace was not an allowed global"):
        waveglow_format.convert([ORIGINAL / "tts_checkpoint_best.pt"])
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="not a WaveGlow checkpoint"):
        waveglow_format.convert([tmp_path / "other.pt"])


@contextmanager
def importable_as_glow():
    """The reference WaveGlow classes pickle as ``glow.WaveGlow`` & co., the names in the legacy release."""
    classes = (reference.WaveGlow, reference.WN, reference.Invertible1x1Conv)
    modules = [c.__module__ for c in classes]
    glow = types.ModuleType("glow")
    for c in classes:
        c.__module__ = "glow"
        setattr(glow, c.__name__, c)
    sys.modules["glow"] = glow
    try:
        yield
    finally:
        for c, module in zip(classes, modules):
            c.__module__ = module
        sys.modules.pop("glow")


@torch.no_grad()
def test_legacy_module_pickle_converts_without_its_classes(tmp_path, io):
    """``{"model": <glow.WaveGlow module>}`` (weight-norm hooks and all) converts to the standalone file's model,
    and the converter never imports ``glow``."""
    standalone = torch.load(ORIGINAL / "waveglow_standalone.pt", weights_only=True)
    with warnings.catch_warnings():   # the release's modules use the old weight-norm hook on purpose
        warnings.simplefilter("ignore", FutureWarning)
        module = reference.WaveGlow(**standalone["hparams"]).eval()
    module.load_state_dict(standalone["model_dict"])
    torch.testing.assert_close(module.infer(io["mel_outputs_postnet"], 0.666, io["waveglow_noise"]), io["audio"],
                               **AUDIO_TOL)   # the reference is the original
    path = tmp_path / "waveglow_256channels_new.pt"
    with importable_as_glow():
        torch.save({"model": module, "iteration": 580000, "optimizer": None, "learning_rate": 1e-4}, path)
    assert "glow" not in sys.modules
    wg = waveglow_format.convert([path])
    assert "glow" not in sys.modules, "the converter must not import the pickled classes"
    torch.testing.assert_close(wg.infer(io["mel_outputs_postnet"], 0.666, io["waveglow_noise"]), io["audio"],
                               **AUDIO_TOL)
    standalone_model = waveglow_format.convert([ORIGINAL / "waveglow_standalone.pt"])
    assert wg.config == standalone_model.config
    for (name, a), b in zip(wg.state_dict().items(), standalone_model.state_dict().values()):
        assert torch.equal(a, b), name


@torch.no_grad()
def test_waveglow_inverts_the_original_forward_with_several_early_outputs(tmp_path):
    """infer(mel, noise=z) run back through the original's training-direction forward gives z again: the latent
    layout holds for 3 early outputs (the fixture has one)."""
    hparams = {"n_mel_channels": 5, "n_flows": 7, "n_group": 8, "n_early_every": 2, "n_early_size": 2,
               "WN_config": {"n_layers": 3, "n_channels": 8, "kernel_size": 3}}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        original = reference.randomise(reference.WaveGlow(**hparams), seed=2, scale=0.1)
    wg = reference.converted_waveglow(original, hparams, tmp_path)
    assert wg.config.remaining_channels == 2
    mel = torch.randn(1, 5, 6)
    z = torch.randn(1, 8, 6 * 256 // 8)
    audio = wg.infer(mel, sigma=1.0, noise=z)
    torch.testing.assert_close(audio, original.infer(mel, 1.0, z), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(original(mel, audio.double().float()), z, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("variant", [
    {"obs_dim": 3, "obs_n_class": 4, "lat_dim": 2},
    {"add_sos": False, "add_eos": False, "collapse_code": False, "n_frames_per_step": 2},
], ids=["obs_lat", "no_sos_eos_2_frames_per_step"])
@torch.no_grad()
def test_tacotron2_variants_match_the_original_algorithm(tmp_path, variant):
    """What the fixture does not show, against the plain re-implementation of the original (benchmarks/references)."""
    hparams = argparse.Namespace(**{**reference.QUICK_TACOTRON2, "n_symbols": 12, **variant, "max_decoder_steps": 9})
    torch.manual_seed(0)
    original = reference.randomise(reference.Tacotron2(hparams), seed=3, scale=0.3)
    taco = reference.converted_tacotron2(original, tmp_path, [str(u) for u in range(9)])
    taco.max_decoder_steps = 9
    ids = taco.encode("3 3 1 8 2 2 0 5")[None]
    masks = torch.rand(9, 2, 1, hparams.prenet_dim) < 0.5
    kwargs = {"obs_labels": torch.tensor([2]), "lat": torch.randn(1, 2)} if variant.get("obs_dim") else {}
    ours = taco.inference(ids, ret_has_eos=True, prenet_dropout_masks=masks, **kwargs)
    theirs = original.inference(ids, masks=masks, **kwargs)
    assert ours[-1] == theirs[-1]
    for name, a, b in zip(("mel", "mel_postnet", "gate", "alignments"), ours[:4], theirs[:4]):
        torch.testing.assert_close(a, b, **TACO_TOL, msg=name)
    if variant.get("obs_dim"):   # defaults: label 0, zero latent
        ours = taco.inference(ids, prenet_dropout_masks=masks)
        torch.testing.assert_close(ours[1], original.inference(ids, masks=masks)[1], **TACO_TOL)


class _Exploit:
    """Unpickling this runs ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _GlowExploit:
    """Claims to be ``glow.WaveGlow`` but rebuilds itself with a call to ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


_GlowExploit.__module__, _GlowExploit.__qualname__ = "glow", "WaveGlow"


@pytest.mark.parametrize("exploit", [_Exploit, _GlowExploit])
def test_a_malicious_pickle_runs_nothing(tmp_path, exploit):
    marker = tmp_path / "pwned"
    path = tmp_path / "waveglow_256channels_new.pt"
    torch.save({"model": exploit(marker)}, path, pickle_protocol=2)
    with open(tmp_path / "plain.pkl", "wb") as f:   # also a bare pickle (the legacy, non-zip format)
        pickle.dump({"model": exploit(marker)}, f, protocol=2)
    for src in (path, tmp_path / "plain.pkl"):
        with pytest.raises(ConversionError):
            waveglow_format.convert([src])
        assert conversion_cli("waveglow", src, "--out", tmp_path / "out").returncode == 2
    assert not marker.exists(), "unpickling ran the payload"
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ entry points, registry
def test_bad_inputs_get_clear_errors(taco, wg):
    with pytest.raises(InputError, match=r"ids must lie in \[0, 15\)"):
        taco.inference(torch.tensor([[1, 99]]))
    with pytest.raises(InputError, match="non-empty"):
        taco.inference(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(InputError, match="no latent"):
        taco.inference(torch.tensor([[1, 2]]), lat=torch.zeros(1, 4))
    with pytest.raises(InputError, match=r"mel must be \(B, 6, T\)"):
        wg.infer(torch.zeros(1, 80, 4))
    with pytest.raises(InputError, match="NaN"):
        wg.infer(torch.full((1, 6, 4), float("nan")))
    with pytest.raises(InputError, match="noise must be"):
        wg.infer(torch.zeros(1, 6, 4), noise=torch.zeros(1, 8, 3))
    with pytest.raises(InputError, match="too short"):
        hubconf.waveglow_denoiser(wg)(torch.zeros(1, 300))
    with pytest.raises(InputError, match="mode"):
        WaveGlowDenoiser(wg, mode="uniform")
    with pytest.raises(InputError, match="never released"):
        find("tacotron2", dense="hubert", vocab_size=500)


def test_registry_lists_every_gslm_tts_release():
    assert {(w.kwargs["dense"], w.kwargs["vocab_size"]) for w in TACOTRON2_WEIGHTS} == \
        {(d, k) for d in ("logmel", "cpc", "hubert", "w2v2") for k in (50, 100, 200)}
    hubert100 = find("tacotron2", dense="hubert", vocab_size=100)
    model, code_dict = hubert100.source_files
    assert model.url.endswith("/gslm/hubert/tts_km100/tts_checkpoint_best.pt") and code_dict.url.endswith("/code_dict")
    assert model.sha256.startswith("b208f8d6") and model.md5 == "df4a9c6ffd1bb00c91405432c234aba3"
    logmel = find("tacotron2", dense="logmel", vocab_size=50).source_files[0]
    assert logmel.sha256 is None and logmel.md5 == "932b3b8527c0125f5f964b57762eba49"
    assert find("waveglow").source_files[0].sha256.startswith("f383c7fd")


# ------------------------------------------------------------------------------------------ original releases
@pytest.fixture
def hub(loopback_hub):
    return loopback_hub


def tts_release(hub, md5: str) -> Weights:
    """The fixture's checkpoint served as an original release that published only an MD5, as GSLM's README."""
    files = [SourceFile(hub.add_raw(f"gslm/test/tts_km12/{p.name}", p.read_bytes()), None, md5=m)
             for p, m in ((ORIGINAL / "tts_checkpoint_best.pt", md5), (ORIGINAL / "code_dict", None))]
    return Weights(name="test-tacotron2", entry_point="tacotron2", kwargs={}, converter="tacotron2",
                   source_files=tuple(files), license="MIT", paper="", description="test",
                   repo_id="speechzoo/not-mirrored-yet")


def test_release_with_a_published_md5_is_verified(hub, io):
    md5 = hashlib.md5((ORIGINAL / "tts_checkpoint_best.pt").read_bytes()).hexdigest()
    with pytest.warns(UserWarning, match="code_dict has no published checksum"):
        taco = zoo.download.load_release(Tacotron2, tts_release(hub, md5), progress=False)
    assert torch.equal(taco.encode(META["call"]["units"]), io["input_ids"])


def test_release_with_a_wrong_md5_is_refused(hub):
    with pytest.raises(WeightsError, match="expected 00000000000000000000000000000000"):
        zoo.download.load_release(Tacotron2, tts_release(hub, "0" * 32), progress=False)
    assert not [p for p in (zoo.download.speechzoo_cache() / "originals").rglob("*.pt")], "a bad file is deleted"
