"""Output naming templates such as `{folder}{stem}.{ext}`: checked once, rendered per image.

Performs no I/O and reads no clock: the caller passes the date it wants in `{date}`.
"""

from __future__ import annotations

import posixpath
import string
from datetime import UTC, datetime

#: What each placeholder becomes, for `imagedrop manifest check` and the docs.
PLACEHOLDERS: dict[str, str] = {
    "base": "the input's file name without its extension, plus '-<old extension>' when the "
            "result's format differs (burger.jpg to png: burger-jpg; burger.png: burger), so "
            "a.jpg and a.png in one folder never share a result",
    "stem": "the input's file name without its extension (burger)",
    "ext": "the result format's extension (png, jpg or webp)",
    "name": "the input's full file name (burger.jpg)",
    "folder": "the input's folder relative to the manifest's folder, '' or ending in '/'",
    "date": "the day the image was recorded for editing, YYYY-MM-DD (UTC)",
    "etag8": "the first 8 characters of the input version's ETag",
}
DEFAULT_TEMPLATE = "{folder}{base}.{ext}"


def extension_for(output_format: str) -> str:
    """File extension for a result format."""
    return "jpg" if output_format == "jpeg" else output_format


def base_name(name: str, output_format: str) -> str:
    """`{base}`: the stem, keeping the old extension when the format changes (a.jpg → a-jpg)."""
    stem, ext = posixpath.splitext(name)
    source, target = ext.lower().lstrip("."), extension_for(output_format)
    if not source or source == target or {source, target} <= {"jpg", "jpeg"}:
        return stem
    return f"{stem}-{source}"


def template_problems(template: str) -> list[str]:
    """Every reason `template` cannot be used (empty list when it is fine)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone '{' or '}'
        return [f"not a valid template ({exc}); write a literal brace as '{{{{' or '}}}}'"]
    problems: list[str] = []
    used: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            problems.append(f"unknown placeholder {{{field}}}; known: {known}")
        elif spec or conversion:
            problems.append(f"placeholder {{{field}}} takes no format or conversion")
        used.add(field)
    if not used & {"stem", "name", "base"}:
        problems.append("must contain {base}, {stem} or {name}, or every result overwrites the "
                        "same object")
    if template.startswith("/"):
        problems.append("must not start with '/': results go under output.prefix")
    if any(part in ("..", ".") for part in template.split("/")):
        problems.append("must not contain '.' or '..' path segments")
    return problems


def render(template: str, *, relative_key: str, output_format: str, etag: str,
           when: float | None) -> str:
    """The result's name under the output prefix, for the input at `relative_key`.

    `relative_key` is the input key relative to the manifest's folder. `when` (unix seconds,
    e.g. the input's last-modified time, so the name is stable across retries) is required
    only when the template uses `{date}`.
    """
    folder, name = posixpath.split(relative_key)
    values = {
        "stem": posixpath.splitext(name)[0],
        "base": base_name(name, output_format),
        "ext": extension_for(output_format),
        "name": name,
        "folder": f"{folder}/" if folder else "",
        "etag8": etag.strip('"')[:8],
        "date": "",
    }
    if "{date}" in template:
        if when is None:
            raise ValueError("the naming template uses {date}: pass `when`")
        values["date"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")
    return template.format(**values)


__all__ = [
    "DEFAULT_TEMPLATE", "PLACEHOLDERS", "base_name", "extension_for", "render", "template_problems",
]


def result_key(prefix: str, name: str, output_format: str) -> str:
    """Where an edited image goes: `prefix` + name with the result format's extension.

    The manifests' default `{base}.{ext}` rule: when the extension changes, the old one stays
    in the name (`a.jpg` → `a-jpg.png`), so `a.jpg` and `a.png` never write the same result.
    """
    folder, base = posixpath.split(name)
    return (f"{prefix}{folder + '/' if folder else ''}{base_name(base, output_format)}"
            f".{extension_for(output_format)}")
