"""Errors a user can act on; lower layers raise them, the plugin shows their message."""


class DataError(Exception):
    """A data or model file that cannot be used as given (pickled, wrong shape or dtype, NaN, corrupt)."""
