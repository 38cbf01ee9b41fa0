"""request-key-daemon: serves a container's request_key upcalls inside it (planned)."""
