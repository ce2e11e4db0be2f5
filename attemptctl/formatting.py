"""Numbers and names as people read them in tables, progress lines and errors. Torch- and numpy-free."""

from __future__ import annotations


def percent(value: float | None, digits: int = 1) -> str:
    """A score in [0, 1] as a percentage with ``digits`` decimals (``0.7735`` -> ``77.3``); None -> ``""``."""
    return "" if value is None else f"{100 * value:.{digits}f}"


def repeated(names) -> list[str]:
    """The names that occur more than once, sorted: what a "listed twice" error names."""
    names = list(names)
    return sorted({n for n in names if names.count(n) > 1})
