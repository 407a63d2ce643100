"""The kernel tier: tests that run inside a QEMU guest against a real Linux USB stack."""
