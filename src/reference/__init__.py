"""Reference implementation of visible-infrared cross-modality person re-identification.

Areas (one sub-package each): ``evaluation`` (rank metrics and the SYSU-MM01 / RegDB protocols),
``data`` (dataset readers, sampler, transforms, SynthVI), ``models``, ``losses``, ``training``,
``results`` and ``audit``. Every component has a spec under ``spec/<area>/<name>.md``.
"""

__version__ = "0.1.0"
