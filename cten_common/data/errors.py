"""The one error type of the data pipeline: it names the file and the problem."""


class DataError(ValueError):
    """Bad input data. ``path`` is the offending file or folder; ``problem`` says what is wrong."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # picklable (an exception pickles its args, here the message alone): a worker
        # process's error reaches the parent; unpicklable, it hung multiprocessing's pool
        return DataError, (self.path, self.problem)
