"""The one exception type a user can cause.

Everything a user can get wrong (a missing file, a corrupt checkpoint, a data
file with the wrong columns) raises :class:`InspectorError` with a message that
names the culprit and says what to do. The CLI prints that message on one line
and exits non-zero; anything else escaping is a bug in dense-inspector.
"""

from __future__ import annotations


class InspectorError(Exception):
    """A problem with the user's input, reported in one line."""


class NotAnMLPError(InspectorError):
    """The file holds dense weights, but not a chain that rebuilds as an MLP.

    Its 2-D weights can still be inspected one tensor at a time
    (:func:`inspector.analysis.analyze_weights_file`, ``inspector info``).
    """
