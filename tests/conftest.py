import os

import pytest

# Hypothesis: deterministic enough for CI, no database in the source tree.
from hypothesis import settings

settings.register_profile("ci", deadline=None, database=None, print_blob=True)
settings.load_profile("ci")
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the slow end-to-end tests first: with pytest-xdist they then run beside the rest
    instead of after it, so the suite's wall time is the longest of them, not their sum plus it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
