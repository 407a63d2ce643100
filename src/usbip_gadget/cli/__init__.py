"""The command line: argument parsing, signals and ``trio.run``; the work is done below.

May import every other room of the package; nothing imports it.
"""

from usbip_gadget.cli._commands import main

__all__ = ["main"]
