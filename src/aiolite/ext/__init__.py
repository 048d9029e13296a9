"""Optional integrations; each needs its extra (``pip install 'aiolite[sqlalchemy]'``)."""
