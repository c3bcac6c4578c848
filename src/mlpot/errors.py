"""Errors raised for bad user input.

Every problem a user can fix (a missing file, an unparseable line, a bad parameter) raises
:class:`MlpotError` or a subclass, with a message that names the file, line or structure and
says what to do. The CLI prints these messages without a traceback and exits with status 2.
"""


class MlpotError(ValueError):
    """A problem with user input (files, parameters, data) that the user can fix."""


class DataError(MlpotError):
    """Bad or inconsistent data in a structure file or in memory."""


class ParameterError(MlpotError):
    """An invalid parameter of a descriptor, model or trainer."""


class ModelFileError(MlpotError):
    """A model file or potential directory that cannot be loaded."""
