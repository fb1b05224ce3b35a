"""pytest-tinyaccel: hardware regression testing of small neural networks.

Public API for target authors: `Target`, `Build`, `RunResult`, `Perf`, `LayerPerf`.
"""

from .targets import Build, LayerPerf, Perf, RunResult, Target, TargetError

__version__ = "0.1.0"
__all__ = ["Build", "LayerPerf", "Perf", "RunResult", "Target", "TargetError", "__version__"]
