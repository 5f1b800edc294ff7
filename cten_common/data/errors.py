"""The one error type of the data pipeline: it names the file and the problem."""


class DataError(ValueError):
    """Bad input data. ``path`` is the offending file or folder; ``problem`` says what is wrong."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
