"""Events: the audit log as a stream (DESIGN invariant 11). `view` turns committed entries into
events as a reader may see them; the hub wakes subscribers when entries commit; the controller
serves pages, long polls, Server-Sent Events and a WebSocket."""
