"""aiolite on a dqlite cluster: the sqlite3-shaped client (``_client``) on a transport that
finds the leader (``_leader``), the protocol codec (``_wire``), how statements are routed
(``_sql``), the Database's members (``_members``) and in-process nodes (``_node``)."""
