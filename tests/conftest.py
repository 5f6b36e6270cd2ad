import pytest


@pytest.fixture
def anyio_backend():
    """Async tests (marked `anyio`) run on asyncio, the loop Taureau's servers use."""
    return "asyncio"
