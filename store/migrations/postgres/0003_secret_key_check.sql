-- key_id tells which secret key sealed a Graph credential without revealing
-- it (hex of the first 16 bytes of HMAC-SHA256(key, "entrasync secret key id
-- v1")), so a start knows whether its key opens each credential. NULL for
-- credentials sealed before: those are checked by opening them.
ALTER TABLE graph_connections ADD COLUMN key_id TEXT COLLATE "C";
