"""Readers for what external tools write, as pure functions over text (no tools, no
processes), so each is tested on small samples in the tool's own format:

- `simlogs`: simulator and runtime output: aiesimulator / x86simulator data streams,
  AI Engine kernel cycle prints, ONNX Runtime profiles, `cycles: N` lines, any regex
  (the `command` target's perf parsers);
- `hlsreport`: Vivado / Vitis HLS synthesis and co-simulation reports (the `hls4ml`
  target's hw_emu figures);
- `mlperf`: MLPerf LoadGen's detail log (`pytest_tinyaccel.loadgen`).
"""
