"""pytest hooks, options and fixtures of pytest-tinyaccel (no logic lives here)."""
