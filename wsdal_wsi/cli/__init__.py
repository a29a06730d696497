"""The ``wsdal`` command line.

Each command lives in its own module and registers itself on :data:`app`;
importing this package registers them all. A command parses its options, calls
the library once and prints; the library parts that import torch (training,
prediction, the model file, the demo) are imported inside the command function,
so ``wsdal --help``, ``info``, ``inspect``, ``count`` and ``report`` start without loading
torch.
"""

from wsdal_wsi.cli._app import app, main

# Registration order is the order shown by ``wsdal --help``.
# isort: off
from wsdal_wsi.cli import demo as _demo  # noqa: F401
from wsdal_wsi.cli import info as _info  # noqa: F401
from wsdal_wsi.cli import synth as _synth  # noqa: F401
from wsdal_wsi.cli import qupath as _qupath  # noqa: F401
from wsdal_wsi.cli import train as _train  # noqa: F401
from wsdal_wsi.cli import predict as _predict  # noqa: F401
from wsdal_wsi.cli import count as _count  # noqa: F401
from wsdal_wsi.cli import report as _report  # noqa: F401
from wsdal_wsi.cli import evaluate as _evaluate  # noqa: F401

# isort: on
from wsdal_wsi.cli._app import reflow_help

for _command in app.registered_commands:
    # Typer keeps the docstring's line breaks inside a paragraph, so rich would wrap
    # a help text ragged: join them (a paragraph starting with \b is kept as written).
    _command.callback.__doc__ = reflow_help(_command.callback.__doc__)

__all__ = ["app", "main"]
