"""The settings tree: read from the environment in exactly one place (`load_settings`).

Every other module receives the part of `Settings` it needs; nothing reads `os.environ` itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagedrop.errors import ConfigError
from imagedrop.hostports import check_rules
from imagedrop.prices import Price, PriceList

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(BaseModel):
    """HTTP server and access control."""

    model_config = _FROZEN
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    public_url: str | None = Field(
        None, description="Base URL clients reach this service at (for local download links)."
    )
    api_keys: tuple[str, ...] = Field((), description="Accepted API keys; empty = no auth.")
    max_body_bytes: int = Field(
        70 * 1024 * 1024, gt=0, description="Largest request body accepted (base64 inflates 4/3)."
    )
    metrics_public: bool = Field(
        False, description="Serve GET /metrics without an API key (for a scraper on a "
        "private network).")
    ui_public: bool = Field(
        False, description="Without API keys, serve the dashboard (/ui) to any address, not "
        "only to loopback.")
    ready_timeout: float = Field(
        2.0, gt=0, description="Seconds GET /ready gives the ledger and storage to answer.")
    tracing: bool = Field(
        False, description="OpenTelemetry tracing (needs the 'otel' extra and the usual "
        "OTEL_* exporter settings): a request's span follows into its job and callbacks.")


class StorageSettings(BaseModel):
    """Object storage: IBM COS (or any S3-compatible store) or the local folder."""

    model_config = _FROZEN
    cos_endpoint: str | None = Field(None, description="COS/S3 endpoint URL; unset = local folder.")
    cos_region: str = Field("us-south", description="COS region.")
    cos_bucket: str | None = Field(None, description="Default bucket (input and output).")
    cos_access_key_id: str | None = Field(None, description="HMAC access key id.")
    cos_secret_access_key: str | None = Field(None, description="HMAC secret access key.")
    cos_api_key: str | None = Field(None, description="IAM API key (instead of HMAC keys).")
    cos_instance_crn: str | None = Field(None, description="COS service instance id/CRN for IAM.")
    cos_auth_endpoint: str | None = Field(None, description="IAM token endpoint override.")
    presign_expires: int = Field(3600, gt=0, le=7 * 24 * 3600, description="Presigned URL life, s.")
    input_bucket: str | None = Field(None, description="Bucket the batch endpoint reads.")
    output_bucket: str | None = Field(None, description="Bucket results are written to.")
    input_prefix: str = Field("", description="Prefix the batch endpoint reads.")
    output_prefix: str = Field("edited/", description="Prefix results are written under.")
    data_dir: Path = Field(Path("./imagedrop-data"), description="Local folder mode root.")
    max_pool_connections: int = Field(64, gt=0, description="HTTP connections to COS.")
    timeout: float = Field(
        60.0, gt=0, description="Seconds a COS connection or read may stall before the call "
        "fails (and the job is retried).")

    @property
    def is_cos(self) -> bool:
        return bool(self.cos_endpoint)

    @property
    def default_bucket(self) -> str:
        return self.cos_bucket or "imagedrop"

    @property
    def resolved_input_bucket(self) -> str:
        return self.input_bucket or self.default_bucket

    @property
    def resolved_output_bucket(self) -> str:
        return self.output_bucket or self.default_bucket

    def sweep_interval(self, drops: DropSettings) -> float:
        """The sweep period: configured, else fast on a local folder, slow on COS."""
        if drops.sweep_interval is not None:
            return drops.sweep_interval
        return 600.0 if self.is_cos else 1.0


class ProviderSettings(BaseModel):
    """The image-edit provider."""

    model_config = _FROZEN
    kind: Literal["openai", "local"] = Field("local", description="Which provider edits images.")
    openai_api_key: str | None = Field(None, description="OpenAI API key.")
    openai_base_url: str | None = Field(None, description="OpenAI base URL (OPENAI_BASE_URL).")
    model: str = Field("gpt-image-2", description="Image model id.")
    quality: str = Field("auto", description="low|medium|high|auto (and newer values).")
    size: str = Field("auto", description="Output size, e.g. 1024x1024 or auto.")
    output_format: Literal["png", "jpeg", "webp"] = Field("png", description="Result format.")
    timeout: float = Field(300.0, gt=0, description="Seconds one edit call may take.")
    billing_pause: float = Field(
        900.0, ge=0, description="After billing_hard_limit_reached, seconds to use local only."
    )
    edits_per_minute: int = Field(
        0, ge=0, description="Provider edits per minute for all replicas together; 0 = no limit."
    )


class SpendSettings(BaseModel):
    """What edits cost and how much the service may spend per UTC day (0 = no limit)."""

    model_config = _FROZEN
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Per-model prices (US$ per 1M tokens: text_in, "
        "image_in, image_out) over the built-in table, as JSON.")
    prices_as_of: str | None = Field(None, description="Date of your prices (with prices).")
    edits_per_day: int = Field(0, ge=0, description="Provider edits per UTC day, all replicas.")
    usd_per_day: float = Field(0.0, ge=0, description="Estimated US$ per UTC day, all replicas.")
    over: Literal["hold", "fail"] = Field(
        "hold", description="A job over a global budget: wait for the next day, or fail.")

    def price_list(self) -> PriceList:
        return PriceList(self.prices, self.prices_as_of)


class ImagingSettings(BaseModel):
    """Limits applied to every input image."""

    model_config = _FROZEN
    max_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest input image, bytes.")
    max_pixels: int = Field(64_000_000, gt=0, description="Largest input image, pixels.")


class LedgerSettings(BaseModel):
    """Durable state: jobs, batches, deliveries."""

    model_config = _FROZEN
    database_url: str = Field(..., description="sqlite:///path or postgresql://…")


class WorkerSettings(BaseModel):
    """Job execution."""

    model_config = _FROZEN
    enabled: bool = Field(True, description="Run the job worker in this process (off: an "
                          "API/intake-only replica; jobs are recorded for other replicas).")
    concurrency: int = Field(16, gt=0, le=1024, description="Edits in flight per process.")
    lease_seconds: float = Field(60.0, gt=0, description="A claim expires unless renewed.")
    poll_interval: float = Field(1.0, gt=0, description="Seconds between idle ledger polls.")
    max_attempts: int = Field(5, gt=0, description="Attempts before a transient failure is final.")
    retry_base: float = Field(2.0, ge=0, description="First retry delay, doubled each attempt.")
    retry_cap: float = Field(300.0, ge=0, description="Longest retry delay.")
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds to finish in-flight work.")
    reap_interval: float = Field(
        0.5, gt=0, description="Seconds between looks for dead processes whose work to take "
        "over (an owner must be seen dead twice in a row, so takeover follows death within "
        "about twice this).")


#: Manifests may name these environment variables as signing secrets (plus an explicit list).
HOOK_SECRET_PREFIX = "IMAGEDROP_HOOK_SECRET_"


class CallbackSettings(BaseModel):
    """Outgoing callbacks (WXO callbackUrl and subscribers)."""

    model_config = _FROZEN

    def secret_allowed(self, name: str) -> bool:
        """May a manifest (written by whoever can write a bucket) name this variable?"""
        return (name.startswith(HOOK_SECRET_PREFIX) and len(name) > len(HOOK_SECRET_PREFIX)
                ) or name in self.hook_secrets_allowed
    allow_private: bool = Field(False, description="Allow loopback/private callback targets.")
    allow_private_subscribers: bool = Field(
        False, description="Allow loopback/private manifest subscriber URLs (separate from "
        "callbacks: manifests are written by whoever can write the bucket).")
    subscriber_hosts: tuple[str, ...] = Field(
        (), description="When set, manifest subscribers may only be these hosts ('*.example.com' "
        "matches sub-domains): bucket writers cannot send signed events anywhere else.")
    rewrites: tuple[tuple[str, str], ...] = Field(
        (), description="host[:port]=host[:port] rules applied to callback URLs (dev tunnels)."
    )
    hook_secrets_allowed: tuple[str, ...] = Field(
        (), description="Environment variables, besides those named IMAGEDROP_HOOK_SECRET_*, "
        "that manifests may name as a subscriber's signing secret (env:NAME).")
    timeout: float = Field(15.0, gt=0, description="Seconds one delivery attempt may take.")
    schedule: tuple[float, ...] = Field(
        (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400),
        description="Delay before each attempt, seconds (Standard Webhooks schedule).",
    )
    concurrency: int = Field(16, gt=0, description="Deliveries in flight.")
    ops_webhook: str | None = Field(
        None, description="URL told (signed, as delivery.exhausted) when a callback or "
        "subscriber delivery gives up for good.")
    ops_webhook_secret: str | None = Field(
        None, repr=False, description="whsec_ secret the ops webhook's events are signed with.")


class DropSettings(BaseModel):
    """Drop-a-file: notification intake, manifests and the sweep."""

    model_config = _FROZEN
    intake_token: str | None = Field(
        None, description="Token every notification must carry (Bearer, ce-token or ?token=).")
    sweep_interval: float | None = Field(
        None, ge=0, description="Seconds between sweeps for missed drops; 0 = never; default "
        "1 s on the local folder, 600 s on COS.")
    sweep_buckets: tuple[str, ...] = Field(
        (), description="Buckets the sweep looks in (default: the input bucket).")
    manifest_ttl: float = Field(30.0, ge=0, description="Seconds a cached manifest is trusted.")
    max_settle: float = Field(300.0, gt=0, description="Longest a drop batch stays open, s.")
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Largest notification body.")


class Settings(BaseModel):
    """Everything imagedrop is configured with."""

    model_config = _FROZEN
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    provider: ProviderSettings = ProviderSettings()
    imaging: ImagingSettings = ImagingSettings()
    ledger: LedgerSettings
    worker: WorkerSettings = WorkerSettings()
    callbacks: CallbackSettings = CallbackSettings()
    drops: DropSettings = DropSettings()
    spend: SpendSettings = SpendSettings()
    url_signing_key: str = Field("", description="Key for local download links (auto if empty).")
    log_json: bool | None = Field(None, description="JSON logs; default: when not on a TTY.")
    log_level: str = Field("INFO", description="Log level.")
    secrets: dict[str, str] = Field(
        default_factory=dict, repr=False,
        description="Environment variables holding whsec_ signing secrets, by name; manifests "
        "refer to them as env:NAME and never contain the secret itself.",
    )

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redactor: keys, tokens, passwords in
        URLs, signing secrets."""
        st, cb = self.storage, self.callbacks
        values = [*self.server.api_keys, st.cos_access_key_id, st.cos_secret_access_key,
                  st.cos_api_key, self.provider.openai_api_key, cb.ops_webhook_secret,
                  self.drops.intake_token, self.url_signing_key, *self.secrets.values()]
        for url in (st.cos_endpoint, self.ledger.database_url, self.provider.openai_base_url,
                    cb.ops_webhook):
            userinfo = urlsplit(url or "").netloc.rpartition("@")[0]
            values += [userinfo, userinfo.partition(":")[2]]
        return [v for v in values if v]


# ---------------------------------------------------------------------------------------------
# Environment mapping: one flat table, so every variable name is visible in one place.
# ---------------------------------------------------------------------------------------------

_ENV: dict[str, tuple[str, str]] = {
    # name: (section, field)
    "IMAGEDROP_HOST": ("server", "host"),
    "IMAGEDROP_PORT": ("server", "port"),
    "IMAGEDROP_PUBLIC_URL": ("server", "public_url"),
    "IMAGEDROP_API_KEYS": ("server", "api_keys"),
    "IMAGEDROP_MAX_BODY_BYTES": ("server", "max_body_bytes"),
    "IMAGEDROP_METRICS_PUBLIC": ("server", "metrics_public"),
    "IMAGEDROP_READY_TIMEOUT": ("server", "ready_timeout"),
    "IMAGEDROP_TRACING": ("server", "tracing"),
    "COS_ENDPOINT": ("storage", "cos_endpoint"),
    "COS_REGION": ("storage", "cos_region"),
    "COS_BUCKET": ("storage", "cos_bucket"),
    "COS_ACCESS_KEY_ID": ("storage", "cos_access_key_id"),
    "COS_SECRET_ACCESS_KEY": ("storage", "cos_secret_access_key"),
    "COS_API_KEY": ("storage", "cos_api_key"),
    "COS_INSTANCE_CRN": ("storage", "cos_instance_crn"),
    "COS_AUTH_ENDPOINT": ("storage", "cos_auth_endpoint"),
    "COS_PRESIGN_EXPIRES": ("storage", "presign_expires"),
    "COS_INPUT_BUCKET": ("storage", "input_bucket"),
    "COS_OUTPUT_BUCKET": ("storage", "output_bucket"),
    "COS_INPUT_PREFIX": ("storage", "input_prefix"),
    "COS_OUTPUT_PREFIX": ("storage", "output_prefix"),
    "IMAGEDROP_DATA_DIR": ("storage", "data_dir"),
    "IMAGEDROP_STORAGE_TIMEOUT": ("storage", "timeout"),
    "IMAGEDROP_PROVIDER": ("provider", "kind"),
    "OPENAI_API_KEY": ("provider", "openai_api_key"),
    "OPENAI_BASE_URL": ("provider", "openai_base_url"),
    "OPENAI_IMAGE_MODEL": ("provider", "model"),
    "OPENAI_IMAGE_QUALITY": ("provider", "quality"),
    "OPENAI_IMAGE_SIZE": ("provider", "size"),
    "OPENAI_IMAGE_OUTPUT_FORMAT": ("provider", "output_format"),
    "IMAGEDROP_PROVIDER_TIMEOUT": ("provider", "timeout"),
    "IMAGEDROP_BILLING_PAUSE": ("provider", "billing_pause"),
    "IMAGEDROP_EDITS_PER_MINUTE": ("provider", "edits_per_minute"),
    "IMAGEDROP_UI_PUBLIC": ("server", "ui_public"),
    "IMAGEDROP_PRICES": ("spend", "prices"),
    "IMAGEDROP_PRICES_AS_OF": ("spend", "prices_as_of"),
    "IMAGEDROP_BUDGET_EDITS_PER_DAY": ("spend", "edits_per_day"),
    "IMAGEDROP_BUDGET_USD_PER_DAY": ("spend", "usd_per_day"),
    "IMAGEDROP_BUDGET_OVER": ("spend", "over"),
    "IMAGEDROP_MAX_IMAGE_BYTES": ("imaging", "max_bytes"),
    "IMAGEDROP_MAX_IMAGE_PIXELS": ("imaging", "max_pixels"),
    "IMAGEDROP_DATABASE_URL": ("ledger", "database_url"),
    "IMAGEDROP_WORKER": ("worker", "enabled"),
    "IMAGEDROP_CONCURRENCY": ("worker", "concurrency"),
    "IMAGEDROP_LEASE_SECONDS": ("worker", "lease_seconds"),
    "IMAGEDROP_POLL_INTERVAL": ("worker", "poll_interval"),
    "IMAGEDROP_MAX_ATTEMPTS": ("worker", "max_attempts"),
    "IMAGEDROP_RETRY_BASE": ("worker", "retry_base"),
    "IMAGEDROP_RETRY_CAP": ("worker", "retry_cap"),
    "IMAGEDROP_SHUTDOWN_GRACE": ("worker", "shutdown_grace"),
    "IMAGEDROP_REAP_INTERVAL": ("worker", "reap_interval"),
    "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS": ("callbacks", "allow_private"),
    "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS": ("callbacks", "allow_private_subscribers"),
    "IMAGEDROP_SUBSCRIBER_HOSTS": ("callbacks", "subscriber_hosts"),
    "IMAGEDROP_CALLBACK_REWRITES": ("callbacks", "rewrites"),
    "IMAGEDROP_CALLBACK_TIMEOUT": ("callbacks", "timeout"),
    "IMAGEDROP_HOOK_SECRETS_ALLOWED": ("callbacks", "hook_secrets_allowed"),
    "IMAGEDROP_CALLBACK_SCHEDULE": ("callbacks", "schedule"),
    "IMAGEDROP_CALLBACK_CONCURRENCY": ("callbacks", "concurrency"),
    "IMAGEDROP_OPS_WEBHOOK": ("callbacks", "ops_webhook"),
    "IMAGEDROP_OPS_WEBHOOK_SECRET": ("callbacks", "ops_webhook_secret"),
    "IMAGEDROP_INTAKE_TOKEN": ("drops", "intake_token"),
    "IMAGEDROP_SWEEP_INTERVAL": ("drops", "sweep_interval"),
    "IMAGEDROP_SWEEP_BUCKETS": ("drops", "sweep_buckets"),
    "IMAGEDROP_MANIFEST_TTL": ("drops", "manifest_ttl"),
    "IMAGEDROP_MAX_SETTLE": ("drops", "max_settle"),
    "IMAGEDROP_MAX_EVENT_BYTES": ("drops", "max_body_bytes"),
    "IMAGEDROP_URL_SIGNING_KEY": ("", "url_signing_key"),
    "IMAGEDROP_LOG_JSON": ("", "log_json"),
    "IMAGEDROP_LOG_LEVEL": ("", "log_level"),
}

ENV_NAMES: tuple[str, ...] = tuple(_ENV)


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()]


def _convert(section: str, field: str, raw: str) -> object:
    """Turn the few list-valued variables into lists; pydantic parses the scalars."""
    if field in ("api_keys", "sweep_buckets", "subscriber_hosts", "hook_secrets_allowed"):
        return _split_list(raw)
    if field == "schedule":
        return _split_list(raw)
    if field == "prices":
        try:
            prices = json.loads(raw)
        except ValueError:
            raise ValueError('not JSON; e.g. {"gpt-image-2": {"text_in": 5, "image_in": 8, '
                             '"image_out": 30}} (US$ per 1M tokens)') from None
        if not isinstance(prices, dict):
            raise ValueError("must be a JSON object of model: prices")
        return prices
    if field == "rewrites":
        rules = []
        for rule in _split_list(raw):
            src, sep, dst = rule.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise ValueError(f"rewrite rule {rule!r} is not FROM=TO")
            rules.append((src.strip(), dst.strip()))
        try:
            check_rules(rules)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("IMAGEDROP_CALLBACK_REWRITES: ")) from None
        return rules
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from an environment mapping (default: the process environment).

    Empty values count as unset. Raises `ConfigError` naming every bad variable at once.
    """
    env = dict(os.environ if environ is None else environ)
    tree: dict[str, dict[str, object]] = {
        "server": {}, "storage": {}, "provider": {}, "imaging": {}, "ledger": {},
        "worker": {}, "callbacks": {}, "drops": {}, "spend": {}, "": {},
    }
    problems: list[str] = []
    for name, (section, field) in _ENV.items():
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            tree[section][field] = _convert(section, field, raw.strip())
        except ValueError as exc:
            problems.append(f"{name}: {exc}")

    storage = tree["storage"]
    data_dir = Path(str(storage.get("data_dir", "./imagedrop-data")))
    tree["ledger"].setdefault("database_url", f"sqlite:///{data_dir / 'imagedrop.sqlite3'}")
    provider = tree["provider"]
    if "kind" not in provider:
        provider["kind"] = "openai" if provider.get("openai_api_key") else "local"

    problems.extend(_cross_checks(tree))
    top = tree.pop("")
    top["secrets"] = {k: v for k, v in env.items() if v.startswith("whsec_")}
    raw_tree = {k: v for k, v in tree.items()} | top
    try:
        settings = Settings.model_validate(raw_tree)
    except ValidationError as exc:
        reverse = {v: k for k, v in _ENV.items()}
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            key = (loc[0], loc[1]) if len(loc) >= 2 and loc[0] in tree else ("", loc[0])
            name = reverse.get(key, ".".join(loc))
            problems.append(f"{name}: {err['msg']}")
        settings = None
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    assert settings is not None
    return settings


def _cross_checks(tree: dict[str, dict[str, object]]) -> list[str]:
    """Rules that span several variables, checked on the raw values so that they are reported
    together with any per-variable problem."""
    problems: list[str] = []
    st, provider = tree["storage"], tree["provider"]
    if st.get("cos_endpoint"):
        hmac = bool(st.get("cos_access_key_id")) + bool(st.get("cos_secret_access_key"))
        if hmac == 1:
            problems.append(
                "COS_ACCESS_KEY_ID/COS_SECRET_ACCESS_KEY: set both HMAC keys, or neither"
            )
        if not hmac and not st.get("cos_api_key"):
            problems.append(
                "COS_ENDPOINT is set but no credentials: set COS_ACCESS_KEY_ID and "
                "COS_SECRET_ACCESS_KEY (HMAC) or COS_API_KEY (IAM)"
            )
        if not (st.get("cos_bucket") or (st.get("input_bucket") and st.get("output_bucket"))):
            problems.append("COS_BUCKET: required with COS_ENDPOINT (or both COS_INPUT_BUCKET "
                            "and COS_OUTPUT_BUCKET)")
    if provider.get("kind") == "openai" and not provider.get("openai_api_key"):
        problems.append("OPENAI_API_KEY: required when IMAGEDROP_PROVIDER=openai")
    url = str(tree["ledger"].get("database_url", ""))
    if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        problems.append("IMAGEDROP_DATABASE_URL: must start with sqlite:/// or postgresql://")
    ops = tree["callbacks"].get("ops_webhook")
    if ops and not str(ops).startswith(("http://", "https://")):
        problems.append("IMAGEDROP_OPS_WEBHOOK: must be an http(s) URL")
    ops_secret = tree["callbacks"].get("ops_webhook_secret")
    if ops_secret and not str(ops_secret).startswith("whsec_"):
        problems.append("IMAGEDROP_OPS_WEBHOOK_SECRET: must be a whsec_ secret "
                        "(make one with: imagedrop secret new)")
    public_url = tree["server"].get("public_url")
    if public_url and not str(public_url).startswith(("http://", "https://")):
        problems.append("IMAGEDROP_PUBLIC_URL: must be an http(s) URL")
    return problems
