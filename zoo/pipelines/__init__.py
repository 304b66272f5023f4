"""Pipelines: models chained into whole systems, each a library API that the ``speechzoo`` commands only call.

* :mod:`zoo.pipelines.dpslm`: DP-SLM (WavLM + DPDP units, ELLA-V + WavTokenizer speech, unit LM continuation);
* :mod:`zoo.pipelines.resynthesis`: units (and F0, speaker) to speech with a unit HiFi-GAN vocoder;
* :mod:`zoo.pipelines.gslm`: GSLM speech to units (textlesslib's ``SpeechEncoder``).
"""
from .dpslm import DPSLM, SpeechToUnits, Units

__all__ = ["DPSLM", "SpeechToUnits", "Units"]
