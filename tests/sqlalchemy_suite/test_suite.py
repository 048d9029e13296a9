"""Every test of SQLAlchemy's dialect compliance suite, unchanged."""

from sqlalchemy.testing.suite import *  # noqa: F403
