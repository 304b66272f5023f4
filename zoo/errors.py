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


class MissingDependencyError(SpeechZooError, ImportError):
    """An optional third-party package that a feature needs is not installed."""


def missing_dependency(feature: str, packages: str, extra: str) -> MissingDependencyError:
    """The error for ``feature`` when ``packages`` (pip names) are missing; ``extra`` is speechzoo's extra that
    lists them. The package index may not carry speechzoo itself, so the advice names what installs anywhere.

    >>> print(missing_dependency("F0 extraction", "amfm_decompy", "f0"))
    F0 extraction needs amfm_decompy, which is not installed: pip install amfm_decompy (in a speechzoo checkout: pip install -e '.[f0]')
    """
    return MissingDependencyError(f"{feature} needs {packages}, which is not installed: pip install {packages} "
                                  f"(in a speechzoo checkout: pip install -e '.[{extra}]')")
