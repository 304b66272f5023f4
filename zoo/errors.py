"""Exceptions raised by speechzoo. Each message says what was wrong and what to do about it."""


class SpeechZooError(Exception):
    """Base class of every error speechzoo raises on purpose."""


class InputError(SpeechZooError, ValueError):
    """An argument (audio, units, codes, ids, options) that the model cannot take."""


class ConfigError(InputError):
    """A model configuration whose values contradict each other or describe an architecture that is not built."""


class AudioError(InputError):
    """Audio that is empty, too short, not finite, wrongly shaped, or cannot be read."""


class WeightsError(SpeechZooError, RuntimeError):
    """A weight file that is missing, truncated, tampered with, or belongs to another model."""


class ConversionError(SpeechZooError, ValueError):
    """An original checkpoint that the converter cannot map onto a speechzoo model."""
