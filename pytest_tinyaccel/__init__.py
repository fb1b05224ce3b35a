"""pytest-tinyaccel: hardware regression testing of small neural networks.

Public API for target authors: `Target`, `Build`, `RunResult`, `Perf`, `LayerPerf`.

PYTEST_DONT_REWRITE: the plugin holds no test assertions, and pytest-in-pytest
runs (pytester) would otherwise warn that the already imported package cannot be
rewritten.
"""

from .targets import Build, LayerPerf, Perf, RunResult, Target, TargetError

__version__ = "0.1.0"
__all__ = ["Build", "LayerPerf", "Perf", "RunResult", "Target", "TargetError", "__version__"]
