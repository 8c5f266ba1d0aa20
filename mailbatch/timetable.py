"""Timetables: readable forms such as ``every monday at 08:00`` mapped onto ``schedule`` jobs."""

from __future__ import annotations

__all__ = ["parse_timetable"]


def parse_timetable(text: str) -> object:
    """Placeholder until the scheduler lands: accepts nothing but checks the text is not empty."""
    if not text.strip():
        raise ValueError("the schedule is empty")
    return text
