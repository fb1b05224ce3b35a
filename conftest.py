"""Repository-level pytest configuration for this project's own runs.

- The project's tests run pytest inside pytest: the `pytester` plugin (pytest
  takes `pytest_plugins` only from the root conftest).
- Hypothesis runs derandomized in CI (`CI=true`), so a CI failure reproduces
  locally with the same examples; elsewhere it explores new ones each run.
- pytester's in-process runs remove, afterwards, every module an inner run
  imported; NumPy's C extensions (numpy.fft, which scikit-learn imports) cannot
  be imported twice in one process, so what the plugin imports lazily is
  imported here, once, before any test (numba's registries: tests/conftest.py).
- `pytest -m aie --target hw_emu` from here runs the bundled suite
  (tests/test_models.py) on the aie target: the unit tests carry no target
  marker, so a target marker selects exactly the bundled model cases.
"""

import os

import onnxruntime  # noqa: F401  (see above)
import sklearn.metrics  # noqa: F401
from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
