"""The regression suite over models/: every bundled model on every target."""

from pytest_tinyaccel.suite import *  # noqa: F401,F403
