"""The project's error type.

Every problem with user input (a malformed dataset folder, a features file with a wrong field, a
NaN, an unknown camera id) raises :class:`VireidError` with a message that names the file or field
and says what was expected. It subclasses :class:`ValueError` so generic callers can catch it; the
command line prints it as ``error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class VireidError(ValueError):
    """Bad input: the message names the offending file or field and what was expected."""
