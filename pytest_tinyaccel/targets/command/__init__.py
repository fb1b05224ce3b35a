"""`command`: drive an external toolchain (Vitis AIE make flow, Gemmini's runner
under spike/qemu, KaNN ...) through argv templates configured in pyproject.toml,
with no Python of the hardware team's own.

Every `[tool.tinyaccel.targets.<name>]` table with `kind = "command"` becomes one
`CommandTarget` named `<name>` (its pytest marker and test-id part).
docs/command-target.md documents the schema with worked configurations.

- schema.py: the configuration, validated into dataclasses at start-up;
- templates.py: the placeholders of commands and paths;
- files.py: the input files written and the output files read back;
- perf.py: perf figures from the files the flow writes;
- target.py: the target itself (build, run, per-kernel localisation, LoadGen).

Processes are started by `pytest_tinyaccel.process`.
"""

from .files import coerce, read_output, write_inputs
from .perf import apply_perf
from .schema import CommandConfig, IOConfig, ModeConfig, PerfSpec, parse_config
from .target import CommandTarget, Job, configured_command_targets, loadgen_infer

__all__ = [
    "CommandConfig",
    "CommandTarget",
    "IOConfig",
    "Job",
    "ModeConfig",
    "PerfSpec",
    "apply_perf",
    "coerce",
    "configured_command_targets",
    "loadgen_infer",
    "parse_config",
    "read_output",
    "write_inputs",
]
