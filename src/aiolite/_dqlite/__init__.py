"""aiolite on a dqlite cluster: the wire client (``_client``), its codec (``_wire``), how
statements are routed (``_sql``), and in-process nodes (``_node``)."""
