"""Free TCP ports on 127.0.0.1 for in-test clusters (the distributed-training tests and the
parameter-server script they run)."""
import socket


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (bound together, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports
