import pytest

from tests.security.helpers import Keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A secret key, an htpasswd file and tokens signed with the key, per test module."""
    return Keys(tmp_path_factory.mktemp("keys"))
