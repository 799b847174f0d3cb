"""The benchmark report: Markdown printed as it is produced, kept for --output."""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["Report", "Target"]


@dataclass
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run
    note: str = ""

    @property
    def verdict(self) -> str:
        return "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")


class Report:
    """Collects Markdown lines (printed immediately when ``echo``) and target verdicts."""

    def __init__(self, echo: bool = True, stream=None):
        self.lines: list[str] = []
        self.targets: list[Target] = []
        self.echo = echo
        self.stream = stream or sys.stdout

    def add(self, text: str = "") -> None:
        for line in text.split("\n"):
            self.lines.append(line)
            if self.echo:
                print(line, file=self.stream, flush=True)

    def heading(self, text: str, level: int = 2) -> None:
        self.add("")
        self.add("#" * level + " " + text)
        self.add("")

    def table(self, headers, rows) -> None:
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")
        self.add("")

    def target(self, name: str, measured: str, passed: bool | None, note: str = "") -> Target:
        t = Target(name, measured, passed, note)
        self.targets.append(t)
        self.add(f"- **{t.verdict}** {name}: {measured}" + (f" ({note})" if note else ""))
        return t

    def markdown(self) -> str:
        return "\n".join(self.lines) + "\n"
