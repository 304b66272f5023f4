"""speechzoo: textless spoken-language models (GSLM, dGSLM, speech-resynthesis, SpeechTokenizer, DP-SLM) in
pure PyTorch, loaded from safetensors. Entry points live in ``hubconf.py``; model code in ``zoo.models``."""

__version__ = "0.1.0"
