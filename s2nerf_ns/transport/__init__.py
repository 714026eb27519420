"""Client and server in separate processes: the wire format, the gRPC server process and the client's stub.

``protocol/`` defines what crosses; this package carries it between two processes. The server process
(:mod:`.server`, started and checked by its command line :mod:`.server_cli`) imports no client-side class
(only the scene-aided attack's settings, plain values, and, for ``--attack``, the head's architecture through the
attacker). The client's stub (:mod:`.client`) stands in for ``ServerSide`` inside the nerfstudio model. :mod:`.certs`
makes and checks the TLS material.
"""
