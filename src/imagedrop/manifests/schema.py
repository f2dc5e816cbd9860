"""The manifest schema (`imagedrop.yaml`): what a folder asks for, and pure helpers over it.

Performs no I/O. Unknown fields are refused so that a typo never silently does nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagedrop.config import ProviderSettings
from imagedrop.manifests import naming
from imagedrop.providers import EditSpec, spec_from_settings
from imagedrop.recipes import EVENT_TYPES, EventName

#: File names that make a folder governed, in order of precedence within one folder.
MANIFEST_NAMES: tuple[str, ...] = ("imagedrop.yaml", "imagedrop.yml", "imagedrop.json")
DEFAULT_INCLUDE = ("*.jpg", "*.jpeg", "*.png", "*.webp")
DEFAULT_OUTPUT_FOLDER = "edited/"

# YAML and JSON already give real types; strict stops "5" passing for 5 or `no` for "no".
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
_ENV_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SIZE = re.compile(r"auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
SECRET_REFUSED = ("must be env:NAME, the name of an environment variable of the service that "
                  "holds the whsec_ secret; secrets never live in manifests")


def _key_path_problem(value: str) -> str | None:
    if value.startswith("/"):
        return "must not start with '/': it is relative to the bucket root"
    if any(part in (".", "..") for part in value.split("/")[:-1]):
        return "must not contain '.' or '..' path segments"
    return None


class Subscriber(BaseModel):
    """A URL told about results, with Standard Webhooks signatures when `secret` is set."""

    model_config = _STRICT
    url: str = Field(max_length=2048, description="http(s) URL that receives signed POSTs.")
    events: list[EventName] = Field(
        default_factory=lambda: list(EVENT_TYPES), min_length=1,
        description="Event types sent to this URL; default: all.")
    secret: str | list[str] | None = Field(
        None, description="env:NAME naming the service's environment variable that holds the "
        "whsec_ signing secret; unset = unsigned. During a secret rotation, a list of two "
        "(the new and the old): every message then carries both signatures.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises on a bad port
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry user:password; secrets never live in manifests")
        return url

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[str]) -> list[str]:
        return list(dict.fromkeys(events))

    @field_validator("secret")
    @classmethod
    def _env_reference(cls, secret: str | list[str] | None) -> str | list[str] | None:
        refs = [secret] if isinstance(secret, str) else secret or []
        if isinstance(secret, list) and not 1 <= len(secret) <= 2:
            raise ValueError("a list of one or two env:NAME references (two during a rotation)")
        if any(not _ENV_REF.fullmatch(ref) for ref in refs):
            raise ValueError(SECRET_REFUSED)  # never echo the value: it may be the secret
        return secret

    @property
    def secret_env(self) -> str | None:
        """The environment variable(s) holding the signing secret(s), comma-separated (NAME of
        env:NAME; two during a rotation), if any."""
        refs = [self.secret] if isinstance(self.secret, str) else self.secret or []
        return ",".join(ref[4:] for ref in refs) or None


class Output(BaseModel):
    """Where results go."""

    model_config = _STRICT
    prefix: str | None = Field(
        None, max_length=512, description="Key prefix relative to the bucket root; default: "
        f"'{DEFAULT_OUTPUT_FOLDER}' under the manifest's folder.")
    bucket: str | None = Field(None, description="Bucket for results; default: the same bucket.")
    name: str = Field(naming.DEFAULT_TEMPLATE, min_length=1, max_length=512,
                      description="Naming template; placeholders: " + ", ".join(
                          "{" + p + "}" for p in naming.PLACEHOLDERS))

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and (problem := _key_path_problem(prefix)):
            raise ValueError(problem)
        return prefix

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, bucket: str | None) -> str | None:
        if bucket is not None and not _BUCKET.fullmatch(bucket):
            raise ValueError("not a bucket name (3-63 lower-case letters, digits, '.', '-')")
        return bucket

    @field_validator("name")
    @classmethod
    def _template(cls, name: str) -> str:
        if problems := naming.template_problems(name):
            raise ValueError("; ".join(problems))
        return name


class Budget(BaseModel):
    """What the folder may spend per UTC day, across every replica; a job over it is not sent
    to the provider."""

    model_config = _STRICT
    edits_per_day: int | None = Field(None, ge=1, le=100_000_000,
                                      description="Provider edits per UTC day.")
    usd_per_day: float | None = Field(
        None, gt=0, le=1_000_000, description="US dollars per UTC day: each edit is estimated "
        "before the call and settled with its reported usage after.")
    over: Literal["hold", "fail"] = Field(
        "hold", description="A job over budget: hold it until the next UTC day, or fail it.")

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.edits_per_day is None and self.usd_per_day is None:
            raise ValueError("give edits_per_day, usd_per_day or both")
        return self


class Manifest(BaseModel):
    """One folder's recipe: the prompt, provider options, output, filters and subscribers."""

    model_config = _STRICT
    prompt: str = Field(min_length=1, max_length=32000, description="The edit instruction.")
    model: str | None = Field(None, description="Image model id; default: the service's.")
    quality: str | None = Field(None, description="low|medium|high|auto; default: the service's.")
    size: str | None = Field(None, description="auto or WxH; default: the service's.")
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="Result format; default: the service's.")
    provider: Literal["openai", "local"] | None = Field(
        None, description="Force a provider; default: the service's.")
    output: Output = Field(default_factory=Output, description="Where results go.")
    include: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE), max_length=100,
        description="Glob patterns on the file name (on the path below the manifest's folder "
        "when a pattern holds '/'), case-insensitive; a file must match one.")
    exclude: list[str] = Field(default_factory=list, max_length=100,
                               description="Glob patterns as in include; a match is skipped.")
    max_bytes: int | None = Field(None, gt=0, description="Skip inputs larger than this.")
    min_bytes: int = Field(0, ge=0, description="Skip inputs smaller than this.")
    recursive: bool = Field(True, description="Govern sub-folders too (nearest manifest wins).")
    fallback: Literal["local", "fail"] = Field(
        "local", description="On billing_hard_limit_reached: edit locally, or fail the job.")
    settle_seconds: float = Field(5.0, ge=0, le=3600,
                                  description="Quiet time that closes a batch of drops.")
    budget: Budget | None = Field(None, description="Daily spend limits for this folder.")
    subscribers: list[Subscriber] = Field(default_factory=list, max_length=20,
                                          description="Who hears about results.")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must not be blank")
        return prompt

    @field_validator("model", "quality")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is not None and not _WORD.fullmatch(value):
            raise ValueError("must be a single word (letters, digits, '.', '_', ':', '-')")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, size: str | None) -> str | None:
        if size is not None and not _SIZE.fullmatch(size):
            raise ValueError("must be auto or WIDTHxHEIGHT, e.g. 1024x1024")
        return size

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        if any(not p.strip() or len(p) > 256 for p in patterns):
            raise ValueError("patterns must be non-empty and at most 256 characters")
        return patterns

    # -- what to take ------------------------------------------------------------------------

    def matches(self, key_relative_name: str, size: int | None) -> tuple[bool, str | None]:
        """Whether this manifest takes the file at `key_relative_name` (the key below the
        manifest's folder), and if not, why; `size` None skips the size limits."""
        name = posixpath.basename(key_relative_name)
        if not name:
            return False, "a folder marker, not a file"
        if name in MANIFEST_NAMES:
            return False, "a manifest, not an image"
        if name.startswith("."):
            return False, "a hidden file"
        if not self.recursive and "/" in key_relative_name:
            return False, "in a sub-folder and the manifest says recursive: false"
        if not any(_glob(p, key_relative_name, name) for p in self.include):
            return False, "matches no include pattern (" + ", ".join(self.include) + ")"
        for pattern in self.exclude:
            if _glob(pattern, key_relative_name, name):
                return False, f"matches exclude pattern {pattern}"
        if size is not None and size < self.min_bytes:
            return False, f"{size} bytes is under min_bytes ({self.min_bytes})"
        if size is not None and self.max_bytes is not None and size > self.max_bytes:
            return False, f"{size} bytes is over max_bytes ({self.max_bytes})"
        return True, None

    # -- where results go --------------------------------------------------------------------

    def output_prefix(self, manifest_folder: str) -> str:
        """The output prefix from the bucket root (the default sits in the manifest's folder)."""
        if self.output.prefix is None:
            return manifest_folder + DEFAULT_OUTPUT_FOLDER
        return self.output.prefix

    def output_prefixes(self, bucket: str, manifest_folder: str) -> list[tuple[str, str]]:
        """Every (bucket, prefix) this manifest writes under; objects there are never inputs."""
        return [(self.output.bucket or bucket, self.output_prefix(manifest_folder))]

    def output_location(self, manifest_folder: str, key: str, bucket: str, etag: str,
                        output_format: str, *, when: float | None = None) -> tuple[str, str]:
        """(bucket, key) of the result for input `key`; `when` feeds `{date}` (see naming)."""
        if not key.startswith(manifest_folder):
            raise ValueError(f"{key!r} is not below the manifest folder {manifest_folder!r}")
        name = naming.render(self.output.name, relative_key=key[len(manifest_folder):],
                             output_format=output_format, etag=etag, when=when)
        return self.output.bucket or bucket, self.output_prefix(manifest_folder) + name

    def location_problems(self, bucket: str, manifest_folder: str) -> list[tuple[str, str]]:
        """(field, reason) for output locations that make no sense where the manifest lives."""
        out_bucket, prefix = self.output_prefixes(bucket, manifest_folder)[0]
        if out_bucket == bucket and manifest_folder.startswith(prefix):
            return [("output.prefix", f"'{prefix}' contains the manifest's own folder "
                     f"'{manifest_folder}': every input would count as an output; use a "
                     f"sub-folder such as '{manifest_folder}{DEFAULT_OUTPUT_FOLDER}'")]
        return []

    # -- what to do --------------------------------------------------------------------------

    @cached_property
    def revision(self) -> str:
        """A stable hash of what shapes the results (prompt, provider options, fallback,
        output): the recipe part of the dedupe key. Comments, key order, filters, subscribers
        and the settle window do not change it."""
        shaping = self.model_dump(mode="json", include={
            "prompt", "model", "quality", "size", "output_format", "provider", "fallback",
            "output"})
        canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def edit_spec(self, defaults: ProviderSettings) -> EditSpec:
        """The edit this manifest asks for: its prompt and options over the defaults."""
        return spec_from_settings(defaults, self.prompt, model=self.model, quality=self.quality,
                                  size=self.size, output_format=self.output_format)

    def wants(self, event_type: str) -> list[Subscriber]:
        """The subscribers that asked for `event_type`."""
        return [s for s in self.subscribers if event_type in s.events]

    def summary(self) -> str:
        """One line saying what this manifest does (for `imagedrop manifest check`)."""
        prompt = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "..."
        options = [f"{k} {v}" for k in ("provider", "model", "quality", "size", "output_format")
                   if (v := getattr(self, k)) is not None]
        prefix = self.output.prefix if self.output.prefix is not None else (
            f"<folder>/{DEFAULT_OUTPUT_FOLDER}")
        where = f"bucket {self.output.bucket}" if self.output.bucket else "the same bucket"
        subs = len(self.subscribers)
        return "; ".join([
            f"prompt {json.dumps(prompt, ensure_ascii=False)}",
            ", ".join(options) if options else "service default provider options",
            f"results to {prefix}{self.output.name} in {where}",
            "takes " + ", ".join(self.include) + ("" if self.recursive else " (this folder only)"),
            f"{subs} subscriber{'' if subs == 1 else 's'}",
            f"revision {self.revision[:12]}",
        ])


def _glob(pattern: str, relative: str, name: str) -> bool:
    # A '/' in the pattern means "match the path below the manifest's folder", as in .gitignore.
    target = relative if "/" in pattern else name
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


__all__ = [
    "DEFAULT_INCLUDE", "DEFAULT_OUTPUT_FOLDER", "EVENT_TYPES", "MANIFEST_NAMES", "Manifest",
    "Output", "Subscriber",
]
