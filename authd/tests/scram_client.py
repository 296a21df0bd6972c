#!/usr/bin/env python3
"""An independent SCRAM client (Python's scramp) for authd's server state machine.

Usage: scram_client.py MECHANISM USERNAME PASSWORD [CHANNEL_BINDING_HEX]

Line protocol over stdin/stdout, one message per line, payloads in base64:
  client -> test:  "C <b64>"  a client message (client-first, then client-final)
                   "OK"       the server's final message (v=) verified
                   "ERR <text>" scramp refused something the server sent
  test -> client:  "S <b64>"  the server's challenge (server-first)
                   "F <b64>"  additional data with success (server-final)
                   "X <why>"  the server ended the exchange with a failure
The client prints "REFUSED" when it receives "X" and exits 0.

Channel binding: scramp 1.5 refuses the name "tls-exporter" only because Python's ssl module
cannot export keying material; with caller-supplied bytes its computation (gs2 header followed
by the binding data, RFC 5802 section 6) does not depend on the type. The script therefore adds
"tls-exporter" to scramp's list of accepted names and passes the fixed bytes the test gives.
"""

import base64
import sys

import scramp
import scramp.core


def send(kind, payload=None):
    line = kind if payload is None else f"{kind} {base64.b64encode(payload).decode()}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fail(text):
    sys.stdout.write(f"ERR {text}\n")
    sys.stdout.flush()


def receive():
    line = sys.stdin.readline().rstrip("\n")
    kind, _, rest = line.partition(" ")
    if kind == "X":
        send("REFUSED")
        sys.exit(0)
    return kind, base64.b64decode(rest).decode()


def main():
    mechanism, username, password = sys.argv[1:4]
    channel_binding = None
    if len(sys.argv) > 4:
        names = scramp.core.CbName
        names.SUPPORTED_TYPES = names.SUPPORTED_TYPES | {"tls-exporter"}
        names.UNSUPPORTED_TYPES = frozenset()
        channel_binding = ("tls-exporter", bytes.fromhex(sys.argv[4]))

    client = scramp.ScramClient(
        [mechanism], username, password, channel_binding=channel_binding
    )
    send("C", client.get_client_first().encode())
    kind, server_first = receive()
    if kind != "S":
        fail(f"expected S, got {kind}")
        return
    try:
        client.set_server_first(server_first)
        send("C", client.get_client_final().encode())
        kind, server_final = receive()
        if kind != "F":
            fail(f"expected F, got {kind}")
            return
        client.set_server_final(server_final)
    except scramp.ScramException as e:
        fail(e)
        return
    send("OK")


if __name__ == "__main__":
    main()
