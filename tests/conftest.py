import os

import pytest
from hypothesis import HealthCheck, settings

# "fast" keeps the unit suite in seconds; REALTALK_HYPOTHESIS=slow digs deeper.
settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile(
    "slow", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("REALTALK_HYPOTHESIS", "fast"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Listed explicitly so a missing trio fails the run instead of being skipped.
    return request.param
