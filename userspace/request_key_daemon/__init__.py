"""request-key-daemon: serves a container's request_key upcalls inside it.

Built so far: ``conf``, keyutils' request-key.conf rules (matching, macro
expansion, pipe programs), checked against keyutils' own request-key.
The daemon loop needs the kernel's interception (KEYCTL_CONTAINER_INTERCEPT)
and is not written yet.
"""
