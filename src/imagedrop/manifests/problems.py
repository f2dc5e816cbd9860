"""What is wrong with a manifest: one `ManifestProblem` per fault, all raised together.

Performs no I/O. Reasons never quote secret-looking values or URL query strings.
"""

from __future__ import annotations

from typing import NamedTuple

from imagedrop.errors import InputError


class ManifestProblem(NamedTuple):
    """One fault: which file, which field (dotted, e.g. `subscribers[0].secret`), and why."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


class ManifestError(InputError):
    """Raised when a manifest cannot be used; `.problems` lists every fault found, not the first."""

    def __init__(self, problems: list[ManifestProblem]) -> None:
        if not problems:
            raise ValueError("ManifestError needs at least one problem")
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)

    @property
    def source(self) -> str:
        """The file the problems are about."""
        return self.problems[0].file


__all__ = ["ManifestError", "ManifestProblem"]
