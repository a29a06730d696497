"""The one exception tree of wsdal-wsi.

Every failure the package raises on purpose is a :class:`WsdalError`. Foreign
libraries' failures (OpenSlide, tifffile, paquo, json, torch) are caught at the
boundary where we call them and re-raised as one of these, with a message that
names the file and says what is wrong (and the bad value where there is one).

The CLI catches :class:`WsdalError` once, prints the message to stderr and exits
with :attr:`WsdalError.exit_code`; nothing else in the package prints or exits.

Exit codes
----------
2
    The user's input cannot be used: a missing or unreadable file, a slide
    OpenSlide cannot open, a slide without resolution, a malformed annotation
    file, a bad option value; an output location that cannot be written (read-only,
    not a folder, no permission, no space left) or that another run is writing.
    (:class:`InputError` and its subclasses.)
1
    The input was fine but the work failed: a training run diverged, some
    slides of a batch failed, QuPath is not available for an operation that
    needs it.
"""

from __future__ import annotations

__all__ = [
    "AnnotationFormatError",
    "ConfigError",
    "InputError",
    "ModelFileError",
    "OutputError",
    "ProjectError",
    "QuPathUnavailableError",
    "ResolutionError",
    "SlideError",
    "StainError",
    "TrainingError",
    "WsdalError",
]


class WsdalError(Exception):
    """Base class of every error wsdal-wsi raises on purpose."""

    exit_code: int = 1


class InputError(WsdalError):
    """The user's input (a file, a folder, an option value) cannot be used."""

    exit_code = 2


class ConfigError(InputError):
    """An option or setting has a bad value; the message includes the value."""


class SlideError(InputError):
    """A slide file is missing, unreadable or not a format OpenSlide opens."""


class ResolutionError(SlideError):
    """A slide has no known resolution (µm/px) and none was given (``--mpp``)."""


class StainError(SlideError):
    """A slide's stains cannot be estimated from its pixels (too little stained tissue,
    one stain only); the message names the slide and what was found."""


class AnnotationFormatError(InputError):
    """An annotation file (QuPath GeoJSON, COCO JSON) is malformed.

    The message names the file and, where it applies, the index of the feature.
    """


class ProjectError(InputError):
    """A QuPath project (``project.qpproj``) is missing, malformed or inconsistent."""


class OutputError(InputError):
    """An output cannot be written where the user asked for it.

    A read-only file system, a path through a plain file, no permission, a full
    disk, an output that would overwrite one of the inputs, or a folder another
    run is writing with other settings. The message names the path and the reason
    in plain words.
    """


class ModelFileError(InputError):
    """A model file is missing, corrupted, or not a wsdal-wsi model."""


class QuPathUnavailableError(WsdalError):
    """An operation needs a QuPath installation (through paquo) and none was found."""


class TrainingError(WsdalError):
    """Training cannot go on: too few samples, a non-finite loss, a broken run folder."""
