"""The bench's tables: one cell per (path, round trip, metric), a note for every n/a, and the
plain-text layout both tables share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

DIRECT, VHCI, BRIDGE = "direct", "vhci-hcd", "bridge"
BRIDGE_BASE = "bridge (base)"  # attach of the revision given to run-tier --baseline
REDIR = "usbredir"  # attach usbredir:// from usbredirect, beside the USB/IP paths
DELAYS_MS = (0, 10)  # round trip; netem delays each direction by half
NOT_MEASURED, MISSING = "—", "n/a"

Cell = float | str


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def figure(metric: str, value: float) -> str:
    """MB/s with one decimal (three below 1 MB/s, where the bridge's figures are); other rates
    as whole numbers."""
    if not metric.endswith("MB/s"):
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def ratio_text(ratio: float) -> str:
    """``0.42x``; two significant digits below 0.1x, so a small ratio does not read 0.00x."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


@dataclass
class Results:
    """One table: its path columns, its ratio columns ``(heading, path)`` (that path's figure
    over vhci-hcd's), the cells by (path, round trip in ms, metric), and a note for every n/a."""

    paths: tuple[str, ...]
    ratios: tuple[tuple[str, str], ...]
    cells: dict[tuple[str, int, str], Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, path: str, delay: int, metric: str, value: float) -> None:
        self.cells[path, delay, metric] = value

    def fail(self, path: str, delays: Sequence[int], metrics: Sequence[str], note: str) -> None:
        """Marks the cells not yet filled as n/a, and says why."""
        for delay in delays:
            for metric in metrics:
                self.cells.setdefault((path, delay, metric), MISSING)
        self.notes.append(note)
        say(f"n/a: {note}")

    def value(self, path: str, delay: int, metric: str) -> float | None:
        cell = self.cells.get((path, delay, metric))
        return cell if isinstance(cell, float) else None

    def text(self, path: str, delay: int, metric: str) -> str:
        cell = self.cells.get((path, delay, metric), NOT_MEASURED if path == DIRECT else MISSING)
        return cell if isinstance(cell, str) else figure(metric, cell)

    def ratio(self, path: str, delay: int, metric: str) -> str:
        mine, vhci = self.value(path, delay, metric), self.value(VHCI, delay, metric)
        if mine is not None and vhci is not None and vhci > 0:
            return ratio_text(mine / vhci)
        return MISSING

    def rows(self, delays: Sequence[int], metrics: Sequence[str]) -> list[list[str]]:
        """The heading row, then one row per round trip and metric."""
        rows = [["", "round trip", *self.paths, *(heading for heading, _ in self.ratios)]]
        for delay in delays:
            for metric in metrics:
                cells = [self.text(path, delay, metric) for path in self.paths]
                ratios = [self.ratio(path, delay, metric) for _, path in self.ratios]
                rows.append([metric, f"{delay} ms", *cells, *ratios])
        return rows


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """The first column left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
