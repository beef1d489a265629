"""Page-test fixtures: a clean throttle cache and logged-in portal clients."""

import pytest
from django.core.cache import cache

from tests.portal.helpers import portal_client


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def portal_as(cast):
    return portal_client
