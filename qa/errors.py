"""Errors raised by the qa library.

The library raises; the edges (CLI, web app) turn these into one-line messages.
Every message names the file or parameter at fault and says what to do.
"""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error qa raises on purpose."""


class ConfigError(QAError):
    """A setting or parameter has a value qa cannot use."""


class CorpusError(QAError):
    """The corpus folder is missing or unusable."""


class IndexNotFoundError(QAError):
    """No built index exists at the given path."""


class IndexCorruptError(QAError):
    """An index generation failed verification (checksum, counts, format)."""


class ModelMismatchError(QAError):
    """The index was built with a different embedding model than the one configured."""


class BuildLockedError(QAError):
    """Another build holds the index lock."""


class BuildError(QAError):
    """A build could not complete; the previous generation keeps serving."""


class DocumentError(QAError):
    """One document could not be read; it is skipped with this message as the reason."""


class InvalidQuestionError(QAError):
    """The question is empty, too long or otherwise unusable."""


class ModelLoadError(QAError):
    """The embedding model could not be loaded from its local directory."""


class PortInUseError(QAError):
    """The web server cannot listen on the requested address and port."""


class UnsupportedModelError(ModelLoadError):
    """The fast query encoder does not implement this model; sentence-transformers is used instead."""
