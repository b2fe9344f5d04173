"""Type stubs for realtalk's Rust extension module (checked by mypy.stubtest in the tests)."""

from typing import Final

__all__ = [
    "__version__",
    "build_profile",
    # ---- pcm ----

    # ---- codec ----

    # ---- ring ----

    # ---- resample ----

    # ---- vad ----

    # ---- frame ----

]


__version__: Final[str]
build_profile: Final[str]

# ---- pcm ----

# ---- codec ----

# ---- ring ----

# ---- resample ----

# ---- vad ----

# ---- frame ----
