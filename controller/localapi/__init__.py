"""The local control API between `sitectl` and the running daemon: JSON lines over a Unix socket.

Wire format, one JSON object per line each way:

    → {"id": 1, "method": "status", "params": {...}}        params optional, id a string or integer
    ← {"id": 1, "result": ...}
    ← {"id": 1, "error": {"code": "method_not_found", "message": "..."}}

A *stream* method (`watch`-style) answers with any number of `{"id": 1, "event": ...}` lines and ends
with `{"id": 1, "result": null}` (or an error). While a stream runs, its connection carries only its
events: the client stops it by closing the connection (sending anything also ends the stream and
the connection). Requests on one connection are answered in order; connections are served
concurrently.

Modules: `protocol` (codes, encoding), `server` (the daemon's `ControlServer` and `MethodRegistry`),
`client` (`call`, `stream` for `sitectl`; light to import). Import them directly: this package
module imports nothing, so a CLI command does not pay for the server's imports.

Access control is the file system: the socket is mode 0660 (owner and one group) in a directory the
daemon owns (systemd's RuntimeDirectory). A request larger than `max_request_bytes`, a connection idle
longer than `idle_timeout_s`, malformed JSON and handler failures get an error answer and a counter;
none of them can stop the daemon.
"""
