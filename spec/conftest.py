"""Sybil: every ``python`` code block of the spec documents runs as a test.

Blocks of one document share a namespace, in order. ``device`` (from ``TEST_DEVICE``) is in it, so
a worked example can put its tensors on the device under test.
"""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    fixtures=["device"],
).pytest()
