"""Serving checks for ``qa serve``: the port is free before anything slow starts.

Gradio's own check runs only when it launches (after the index build and the model load) and
ends in a traceback that suggests an environment variable; this says what to do in one line.
"""

from __future__ import annotations

import errno
import socket

from qa.errors import PortInUseError


def check_port(host: str, port: int) -> None:
    """Raise if nothing could listen on ``host:port`` now (port 0 = any free port: fine).

    The probe binds with ``SO_REUSEADDR`` like uvicorn does, so a port left in TIME_WAIT by
    a server that just stopped counts as free, and one another program listens on does not.

    Raises:
        PortInUseError: the port is taken, or the address cannot be bound here.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUseError(f"cannot listen on {host!r}: {exc.strerror}; pass --host ADDRESS") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} is in use; pass --port N") from None
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pass --host ADDRESS or --port N"
            ) from None
