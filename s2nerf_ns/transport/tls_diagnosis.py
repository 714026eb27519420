"""CLIENT: why a TLS channel to ``s2nerf-server`` does not come up, in one line (wrong CA, wrong host name, TLS on
one side only). Runs on the client machine; nothing here crosses the trust boundary but a TLS handshake.

``options`` is the client's ``RemoteOptions`` (read: ``insecure``, ``tls_ca``, ``tls_server_name``)."""

from __future__ import annotations

import socket
import ssl
from typing import Optional

NAME_MISMATCH = (62, 64)
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH."""
AGREES = "agrees"
""":func:`tls_probe`'s answer when the handshake went as the client expects (TLS up, or plaintext for --insecure)."""
PLAINTEXT_SIGNS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
                   "UNKNOWN_PROTOCOL")
"""OpenSSL reasons that mean the peer answered, but not in TLS (a positive sign of a plaintext server)."""


def tls_probe(address: str, host: str, port: int, options) -> Optional[str]:
    """Shake hands with ``host:port`` directly (Python's ``ssl``, the client's own CA and host name), whatever gRPC's
    reconnection back-off has got to. Returns the one line for a refusal that TLS decides, :data:`AGREES` when the
    handshake went as the client expects, or None when it decides nothing (no connection, a reset, a time-out)."""
    where = f"s2nerf: the server at {address}"
    context = ssl.create_default_context(cafile=None if options.insecure else str(options.tls_ca))
    context.set_alpn_protocols(["h2"])
    if options.insecure:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    name = options.tls_server_name or host
    try:
        raw = socket.create_connection((host, port), timeout=2.0)
    except OSError:
        return None  # the port went away between two checks: keep waiting
    try:
        with raw, context.wrap_socket(raw, server_hostname=name):
            pass
    except ssl.SSLCertVerificationError as err:
        message = str(err.verify_message).lower()
        if err.verify_code in NAME_MISMATCH or "mismatch" in message or "hostname" in message:
            return (f"{where}: its certificate is not made for that host name ({name}); connect by a name it was "
                    "made for (s2nerf-server-cert --host), or give --pipeline.model.remote.tls-server-name")
        return (f"{where} is not trusted: its certificate does not verify against --pipeline.model.remote.tls-ca "
                f"{options.tls_ca} (wrong CA?); give the server's own server.crt (or the CA that signed it)")
    except ssl.SSLError as err:
        if any(sign in f"{err.reason} {err}".upper() for sign in PLAINTEXT_SIGNS):  # the peer speaks, not TLS
            return AGREES if options.insecure else (
                f"{where} does not speak TLS (--pipeline.model.remote.tls-ca {options.tls_ca}); does it run "
                f"--insecure? ({err.reason})")
        return None  # an EOF or a reset mid-handshake decides nothing
    except OSError:
        return None  # reset, refused or timed out: decides nothing, keep waiting
    if options.insecure:
        return (f"{where} accepts connections but not in clear (--pipeline.model.remote.insecure True): it serves "
                "TLS; give --pipeline.model.remote.tls-ca")
    return AGREES  # TLS agrees: whatever keeps the channel down, it is not the handshake


def tls_reason(address: str, options, details: str) -> Optional[str]:
    """The one line for a connection that TLS (or its absence on one side) refuses, from gRPC's error details (the
    fallback when :func:`tls_probe` decided nothing)."""
    where = f"s2nerf: the server at {address}"
    if options.insecure:
        if "Socket closed" in details or "reset" in details.lower():
            return (f"{where} accepts connections but not in clear (--pipeline.model.remote.insecure True): it "
                    f"probably serves TLS; give --pipeline.model.remote.tls-ca ({details[-100:]})")
        return None
    ca = f"--pipeline.model.remote.tls-ca {options.tls_ca}"
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return (f"{where} is not trusted: its certificate does not verify against {ca} (wrong CA?); give the "
                "server's own server.crt (or the CA that signed it)")
    if "not in peer certificate" in details or "hostname verification" in details.lower():
        return (f"{where}: its certificate is not made for that host name; connect by a name it was made for "
                "(s2nerf-server-cert --host), or give --pipeline.model.remote.tls-server-name")
    if "WRONG_VERSION_NUMBER" in details or "handshake" in details.lower():
        return f"{where} refused the TLS handshake ({ca}); does it run --insecure? ({details[-100:]})"
    return None
