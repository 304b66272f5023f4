"""Every model config refuses contradictory values in ``__post_init__`` with the one ConfigError (an InputError,
so a ValueError, as callers caught before)."""
import ast
from pathlib import Path

import pytest

import zoo
from zoo.errors import ConfigError, InputError
from zoo.models.f0_vqvae import BottleneckConfig, F0VQVAEConfig, JukeboxConfig
from zoo.models.gslm_ulm import GSLMUnitLMConfig
from zoo.models.hifigan import CodeHiFiGANConfig
from zoo.models.wavlm import WavLMConfig
from zoo.models.wavtokenizer import BackboneConfig, ISTFTHeadConfig, WavTokenizerConfig
from zoo.nn.seanet import SEANetConfig
from zoo.nn.transformer import TransformerConfig

JUKEBOX = dict(output_emb_width=4, downs_t=(1,), strides_t=(2,), width=4, depth=1)
HIFIGAN = dict(upsample_rates=(2,), upsample_kernel_sizes=(4,), upsample_initial_channel=4, resblock_kernel_sizes=(3,),
               resblock_dilation_sizes=((1,),), num_embeddings=4, embedding_dim=4, model_in_dim=4, code_hop_size=2)

BAD_CONFIGS = {
    "seanet activation": (lambda: SEANetConfig(activation="ReLU"), "activation must be one of"),
    "seanet bilstm": (lambda: SEANetConfig(bidirectional=True, lstm_layers=0), "needs lstm_layers"),
    "transformer heads": (lambda: TransformerConfig(dim=8, n_layers=1, head_dim=4, hidden_dim=8, n_heads=3,
                                                    n_kv_heads=2, vocab_size=5), "multiple of n_kv_heads"),
    "jukebox stride": (lambda: JukeboxConfig(**{**JUKEBOX, "strides_t": (3,)}), "even integers"),
    "f0 vq width": (lambda: F0VQVAEConfig(BottleneckConfig(l_bins=4, emb_width=8), JukeboxConfig(**JUKEBOX),
                                          JukeboxConfig(**JUKEBOX)), "the codebook expects"),
    "hifigan resblock": (lambda: CodeHiFiGANConfig(**HIFIGAN, resblock="3"), "resblock must be"),
    "hifigan channels": (lambda: CodeHiFiGANConfig(**{**HIFIGAN, "model_in_dim": 5}), "conditioning streams"),
    "gslm ulm heads": (lambda: GSLMUnitLMConfig(symbols=("<s>",), embed_dim=10, attention_heads=4), "multiple of 4"),
    "wavlm heads": (lambda: WavLMConfig(embed_dim=10, num_heads=4), "not divisible"),
    "wavtokenizer groups": (lambda: BackboneConfig(dim=40), "multiple of 32"),
    "wavtokenizer istft": (lambda: ISTFTHeadConfig(n_fft=80, hop_length=80), "0 < hop_length < n_fft"),
    "wavtokenizer codebook": (lambda: WavTokenizerConfig(codebook_size=0), "must be positive"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_bad_configs_raise_config_error(name):
    build, message = BAD_CONFIGS[name]
    with pytest.raises(ConfigError, match=message) as raised:
        build()
    assert isinstance(raised.value, InputError) and isinstance(raised.value, ValueError)


def test_every_post_init_raises_config_error_only():
    """Configs added later follow the rule too: any ``raise`` in a ``__post_init__`` under zoo/ is a ConfigError."""
    checked, wrong = 0, []
    for path in sorted(Path(zoo.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__post_init__":
                for statement in ast.walk(node):
                    if isinstance(statement, ast.Raise):
                        checked += 1
                        call = statement.exc
                        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                                and call.func.id == "ConfigError"):
                            wrong.append(f"{path.relative_to(Path(zoo.__file__).parent)}:{statement.lineno}")
    assert checked >= len(BAD_CONFIGS) and not wrong, wrong
