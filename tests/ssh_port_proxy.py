"""An ssh ProxyCommand that relays stdin/stdout to HOST:PORT (`ssh_port_proxy.py %h 2222`).

Ray's cluster launcher has no SSH port setting, only `auth.ssh_proxy_command`;
tests/test_ray_up.py reaches its own sshd on a free port through this.
"""

import os
import socket
import sys
import threading


def main(host: str, port: int) -> None:
    sock = socket.create_connection((host, port))

    def upstream() -> None:  # ssh -> sshd; ssh closing our stdin half-closes the socket
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    out = sys.stdout.buffer
    while data := sock.recv(65536):  # sshd -> ssh, until sshd closes
        out.write(data)
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
