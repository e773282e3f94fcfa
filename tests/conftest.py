import os

# Hypothesis: deterministic enough for CI, no database in the source tree.
from hypothesis import settings

settings.register_profile("ci", deadline=None, database=None, print_blob=True)
settings.load_profile("ci")
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
