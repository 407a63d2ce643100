"""Certificates for the mutual-TLS tests, made with trustme: one CA that both sides trust,
a server and a client certificate it signed, and an unrelated CA with a client ("stranger")
and a server ("impostor") certificate of its own. The kernel tier uses them too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from usbip_gadget._net import Tls, load_tls


@dataclass(frozen=True)
class Certs:
    """PEM files in ``folder``: ``NAME.crt``/``NAME.key`` per certificate, ``ca.pem`` and
    ``other-ca.pem`` for the two CAs."""

    folder: Path

    def args(self, who: str, ca: str = "ca") -> list[str]:
        """The command line's --tls options for ``who`` trusting ``ca``."""
        return [
            "--tls-cert", str(self.folder / f"{who}.crt"),
            "--tls-key", str(self.folder / f"{who}.key"),
            "--tls-ca", str(self.folder / f"{ca}.pem"),
        ]  # fmt: skip

    def tls(
        self, who: str, *, server_side: bool, ca: str = "ca", peer_name: str | None = None
    ) -> Tls:
        cert, key, ca_file = self.args(who, ca)[1::2]
        return load_tls(cert, key, ca_file, server_side=server_side, peer_name=peer_name)


def make_certs(folder: Path) -> Certs:
    """Write the certificates into ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    issued = {
        "server": ca.issue_cert("localhost", "127.0.0.1", "::1"),
        "client": ca.issue_cert("client.example"),
        "stranger": other.issue_cert("client.example"),
        "impostor": other.issue_cert("localhost", "127.0.0.1"),
    }
    for name, cert in issued.items():
        cert.cert_chain_pems[0].write_to_path(str(folder / f"{name}.crt"))
        cert.private_key_pem.write_to_path(str(folder / f"{name}.key"))
    return Certs(folder)
