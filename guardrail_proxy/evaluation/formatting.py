"""Small pure formatters shared by the Markdown report and the terminal tables."""

from __future__ import annotations


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def delta(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"
