"""Descriptors of real kinds of devices, written out byte by byte.

The keyboard follows the HID 1.11 Appendix E example, the microphone the USB Audio 1.0
Appendix B example; the others are laid out as such devices report themselves.
"""

from __future__ import annotations


def _hex(text: str) -> bytes:
    return bytes.fromhex(" ".join(text.split()))


# A USB flash drive: Mass Storage, SCSI transparent, Bulk-Only Transport.
MASS_STORAGE_DEVICE = _hex("12 01 00 02 00 00 00 40 81 07 67 55 00 01 01 02 03 01")
MASS_STORAGE_CONFIG = _hex(
    """
    09 02 20 00 01 01 00 80 32
    09 04 00 00 02 08 06 50 00
    07 05 81 02 00 02 00
    07 05 02 02 00 02 00
    """
)

# HID 1.11 Appendix E: a boot keyboard with a 63-byte report descriptor.
KEYBOARD_DEVICE = _hex("12 01 10 01 00 00 00 08 ff ff 01 00 00 01 04 0e 30 01")
KEYBOARD_CONFIG = _hex(
    """
    09 02 22 00 01 01 00 a0 32
    09 04 00 00 01 03 01 01 00
    09 21 01 01 00 01 22 3f 00
    07 05 81 03 08 00 0a
    """
)
KEYBOARD_REPORT = _hex(
    """
    05 01 09 06 a1 01 05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02 95 01
    75 08 81 01 95 05 75 01 05 08 19 01 29 05 91 02 95 01 75 03 91 01 95 06
    75 08 15 00 25 65 05 07 19 00 29 65 81 00 c0
    """
)

# A composite device: CDC-ACM (grouped by an IAD) plus a vendor-specific reset interface.
CDC_ACM_CONFIG = _hex(
    """
    09 02 54 00 03 01 00 80 fa
    08 0b 00 02 02 02 00 04
    09 04 00 00 01 02 02 00 04
    05 24 00 20 01
    05 24 01 00 01
    04 24 02 02
    05 24 06 00 01
    07 05 81 03 08 00 10
    09 04 01 00 02 0a 00 00 00
    07 05 02 02 40 00 00
    07 05 82 02 40 00 00
    09 04 02 00 00 ff 00 01 05
    """
)

# CDC-ECM: the Ethernet Networking functional descriptor names iMACAddress (here 3).
CDC_ECM_CONFIG = _hex(
    """
    09 02 50 00 02 01 00 c0 01
    09 04 00 00 01 02 06 00 00
    05 24 00 10 01
    05 24 06 00 01
    0d 24 0f 03 00 00 00 00 ea 05 00 00 00
    07 05 81 03 10 00 09
    09 04 01 00 00 0a 00 00 00
    09 04 01 01 02 0a 00 00 00
    07 05 82 02 40 00 00
    07 05 01 02 40 00 00
    """
)

# USB Audio 1.0 Appendix B: a mono 8 kHz microphone with a zero-bandwidth alt setting 0
# and 9-byte isochronous endpoints.
MICROPHONE_CONFIG = _hex(
    """
    09 02 64 00 02 01 00 80 0a
    09 04 00 00 00 01 01 00 00
    09 24 01 00 01 1e 00 01 01
    0c 24 02 01 01 02 00 01 00 00 00 00
    09 24 03 02 01 01 00 01 00
    09 04 01 00 00 01 02 00 00
    09 04 01 01 01 01 02 00 00
    07 24 01 02 01 01 00
    0b 24 02 01 01 02 10 01 40 1f 00
    09 05 81 01 10 00 01 00 00
    07 25 01 00 00 00 00
    """
)

ALL_CONFIGS = {
    "mass-storage": MASS_STORAGE_CONFIG,
    "keyboard": KEYBOARD_CONFIG,
    "cdc-acm": CDC_ACM_CONFIG,
    "cdc-ecm": CDC_ECM_CONFIG,
    "microphone": MICROPHONE_CONFIG,
}
