"""The server's tuning: how long device calls may block, and what a client may ask for."""

from __future__ import annotations

from dataclasses import dataclass

from usbip_gadget._net import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_ADDRESS, ConnectionLimits
from usbip_gadget.protocol import DEFAULT_MAX_TRANSFER


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Limits and timeouts of the server (seconds, bytes, counts).

    - ``slice_timeout``: how long one bulk or interrupt call may block before the server
      looks whether the URB was unlinked; the worst-case delay of an unlink.
    - ``control_timeout``: a control transfer cannot be stopped part-way (repeating it would
      repeat the request), so it runs once with this timeout and completes with -ETIMEDOUT.
    - ``chunk``: the most one device call moves; longer URBs take several calls (rounded to
      whole packets, so the transfer is the same). Bounds the USB stack's buffers (usbfs
      allows 16 MiB in all by default).
    - ``presence_interval``: how often a session checks that its device is still plugged in
      (an idle device says nothing when it is pulled out).
    - ``handshake_timeout``: how long a new connection may take for each handshake of its
      transport (TLS, WebSocket); none on plain TCP.
    - ``op_timeout``: how long a new connection may take to send its request.
    - ``send_timeout``: a client that takes no data for this long is dropped.
    - ``idle_timeout``: a client that has had no URB in flight and sent nothing for this
      long is dropped (None: never).
    - ``max_transfer``, ``max_in_flight``, ``max_pending_bytes``: a client asking for a
      longer URB, more URBs at once, or more memory held for it (URBs not yet answered,
      unlinks waiting for them and replies not yet sent, each with its bookkeeping) is
      dropped as hostile.
    - ``max_connections``, ``max_per_address``: connections held at once, in all and from
      one address; one more is closed as soon as it is accepted.
    """

    slice_timeout: float = 0.1
    control_timeout: float = 5.0
    chunk: int = 1024 * 1024
    presence_interval: float = 0.5
    handshake_timeout: float = 10.0
    op_timeout: float = 5.0
    send_timeout: float = 30.0
    idle_timeout: float | None = None
    max_transfer: int = DEFAULT_MAX_TRANSFER
    max_in_flight: int = 1024
    max_pending_bytes: int = 64 * 1024 * 1024
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS

    @property
    def limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.max_connections, self.max_per_address)
