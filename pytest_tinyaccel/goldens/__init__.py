"""Goldens: ONNX Runtime's reference outputs and everything about them.

- `store`: the files under `golden/<model>/`, written atomically, read with checks;
- `keeper`: making them (with --tinyaccel-update-golden), telling whether they are
  still current, and the upgrade review after an ONNX Runtime change;
- `compare`: output and Top-5 comparisons with failure messages that say where.
"""
