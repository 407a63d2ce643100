"""Settings shared by every test module."""

from hypothesis import settings

# Hypothesis's per-example deadline (200 ms) measures the machine's load as much as the code:
# on a busy CI runner a round trip that takes 2 ms can take 300. Slow code is caught by the
# benches, and a hang by pytest-timeout, so examples here have no deadline.
settings.register_profile("usbip-gadget", deadline=None)
settings.load_profile("usbip-gadget")
