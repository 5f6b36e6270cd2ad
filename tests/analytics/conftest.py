import pytest

from taureau.analytics import Executor


@pytest.fixture(scope="module")
def ex():
    """One embedded executor per module: two warm workers and a state store of its own."""
    with Executor(workers=2, progress=False) as executor:
        yield executor
