"""Every example's config files are read by the command they are for, and each example's
README names its files. (The kernel tier runs them: tests/kernel/test_examples.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from usbip_gadget.cli._args import device_match as _device_match
from usbip_gadget.cli._args import parse as _parse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*/*.toml"))


def test_there_are_the_three_uses() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == ["kiosk", "lab", "scanner"]
    assert len(CONFIGS) == 6


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_config_is_read_by_its_command(config: Path) -> None:
    command = "serve" if config.name == "serve.toml" else "attach"
    args = _parse([command, "--config", str(config)])
    if command == "attach":
        match = _device_match(args)
        assert match is not None
        assert match.vid_pid is not None  # every example finds its device by what it is
        assert args.server is not None
    else:
        assert args.allow  # serve exports nothing unless selected
    assert config.name in (config.parent / "README.md").read_text()
