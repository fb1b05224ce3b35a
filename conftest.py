"""Repository-level pytest configuration for this project's own runs.

- The project's tests run pytest inside pytest: the `pytester` plugin (pytest
  takes `pytest_plugins` only from the root conftest).
- `pytest -m aie --target hw_emu` from here runs the bundled suite
  (tests/test_models.py) on the aie target: the unit tests carry no target
  marker, so a target marker selects exactly the bundled model cases.
"""

pytest_plugins = ["pytester"]
