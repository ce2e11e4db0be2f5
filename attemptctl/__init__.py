"""attemptctl: ATTEMPT (Asai et al., EMNLP 2022) as a command-line toolkit.

The frozen-LM, soft-prompt mixture method lives in :mod:`attemptctl.method.prompts`,
:mod:`attemptctl.method.attention` and :mod:`attemptctl.method.lm`; the registry of trained prompts is the
separate :mod:`registry` package.
"""

__version__ = "0.1.0"
