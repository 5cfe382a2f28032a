"""pytest picks up the fixtures and hooks of tests/support.py from here."""
from support import *  # noqa: F401,F403
