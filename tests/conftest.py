import os

import pytest
from hypothesis import HealthCheck, settings

# "fast" keeps the unit suite in seconds; REALTALK_HYPOTHESIS=slow digs deeper.
settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile(
    "slow", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("REALTALK_HYPOTHESIS", "fast"))


# Tests that must also hold on uvloop (whose transports the asyncio fast paths handle too) list
# the backends themselves: @pytest.mark.parametrize("anyio_backend", ALL_LOOPS).
UVLOOP = pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")
ALL_LOOPS = ["asyncio", "trio", UVLOOP]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Listed explicitly so a missing trio fails the run instead of being skipped.
    return request.param
