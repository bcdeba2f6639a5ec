"""The one error type for bad data, shared by `tfglow.data` and `data_prep`."""


class DataError(ValueError):
    """Bad input data. The message names the offending file and says what is wrong."""

    def __init__(self, path, problem):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
