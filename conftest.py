"""Repository-level pytest configuration for this project's own runs.

- The project's tests run pytest inside pytest: the `pytester` plugin (pytest
  takes `pytest_plugins` only from the root conftest).
- Hypothesis runs derandomized in CI (`CI=true`), so a CI failure reproduces
  locally with the same examples; elsewhere it explores new ones each run.
- pytester's in-process runs remove, afterwards, every module an inner run
  imported; NumPy's C extensions (numpy.fft, which scikit-learn imports) cannot
  be imported twice in one process, so what the plugin imports lazily is
  imported here, once, before the first test that runs pytest in-process
  (numba's registries: tests/conftest.py); not at start-up, which the bundled
  suite alone would pay in every run (scikit-learn's import alone is about 2 s).
- `pytest -m aie --target hw_emu` from here runs the bundled suite
  (tests/test_models.py) on the aie target: the unit tests carry no target
  marker, so a target marker selects exactly the bundled model cases.
"""

import os

import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "pytester" in getattr(item, "fixturenames", ()):  # see above
        import onnxruntime  # noqa: F401
        import sklearn.metrics  # noqa: F401
