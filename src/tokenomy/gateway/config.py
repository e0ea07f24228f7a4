"""The gateway's configuration file (gateway.yaml), validated; every error names the file and the field.

A tier is either self-hosted (it has a `deployment`: its $/Mtok and predicted TTFT come from the
cost model) or an API (prices from the catalogue by `price: provider/model`, or given in $/Mtok).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tokenomy.catalog.errors import CatalogError
from tokenomy.gateway.classifier import CLASSES
from tokenomy.gateway.validators import ValidatorConfig
from tokenomy.yamlfile import field_error, read_yaml


class ConfigError(CatalogError):
    """A gateway.yaml that cannot be used, with the file and field in the message."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierDeployment(Strict):
    """What runs behind a self-hosted endpoint: the cost model prices it and predicts its TTFT."""

    model: str  # catalogue id, e.g. llama-3.1-8b
    gpu: str = "H100-SXM"
    count: int = Field(1, gt=0)  # GPUs behind the endpoint (tensor parallel)
    precision: str = "native"
    engine: str = "vllm"
    usd_per_hour: float | None = Field(None, ge=0)  # whole endpoint; default: catalogue GPU price × count
    utilisation: float = Field(0.7, gt=0, le=1)  # mean load assumed when turning $/hour into $/Mtok
    pricing_isl: int = Field(1024, gt=0)  # request shape the $/Mtok is computed for
    pricing_osl: int = Field(256, gt=0)


class TierConfig(Strict):
    name: str = Field(min_length=1)
    url: str  # OpenAI-compatible base URL, ending in /v1
    model: str  # the model name the upstream serves (sent upstream)
    classes: list[str] = Field(min_length=1)  # request classes this tier is good enough for
    deployment: TierDeployment | None = None  # self-hosted tiers
    price: str | None = None  # API tiers: "provider/model" from the price catalogue
    usd_per_mtok_input: float | None = Field(None, ge=0)
    usd_per_mtok_output: float | None = Field(None, ge=0)
    api_key_env: str | None = None  # environment variable holding the upstream's API key
    ttft_slo_s: float | None = Field(None, gt=0)  # spill to the next tier when the predicted TTFT exceeds it
    resume_fraction: float = Field(0.8, gt=0, le=1)  # stop spilling when predicted TTFT ≤ this × SLO…
    spill_hold_s: float = Field(0.5, ge=0)  # …and it has spilled for at least this long
    max_inflight: int | None = Field(None, gt=0)  # hard cap on requests in flight to this tier
    max_connections: int = Field(256, gt=0)  # connections open to the upstream at once (requests wait for one)
    # the served model's tokenizer, when it is the bundled one: tighter prompt reservations (gateway/schema.py)
    tokenizer: Literal["smollm2"] | None = None
    metrics_url: str | None = None  # Prometheus endpoint; default: the server root's /metrics (self-hosted)

    @field_validator("url", "metrics_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got '{url}'")
        return url.rstrip("/") if url else url

    @model_validator(mode="after")
    def _priced(self) -> TierConfig:
        given = self.usd_per_mtok_input is not None, self.usd_per_mtok_output is not None
        if self.deployment is None and self.price is None and not all(given):
            raise ValueError(
                "a tier needs a deployment (self-hosted), a price: provider/model (API), "
                "or both usd_per_mtok_input and usd_per_mtok_output"
            )
        if any(given) and not all(given):
            raise ValueError("give both usd_per_mtok_input and usd_per_mtok_output")
        return self

    @property
    def self_hosted(self) -> bool:
        return self.deployment is not None


class Limits(Strict):
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_tokens: int = Field(8192, gt=0)  # largest max_tokens a client may ask for
    default_max_tokens: int = Field(1024, gt=0)  # reserved, and sent upstream, when a request gives none
    max_n: int = Field(16, gt=0)  # largest n (and best_of) a client may ask for
    max_concurrent: int = Field(4096, gt=0)  # requests in flight at once; more are answered 503


class Timeouts(Strict):
    connect_s: float = Field(2.0, gt=0)  # to open a connection to an upstream
    first_byte_s: float = Field(60.0, gt=0)  # streamed: from sending the request to its first token
    read_s: float = Field(30.0, gt=0)  # streamed: longest wait between two reads after the first token
    total_s: float = Field(600.0, gt=0)  # a whole request (a non-streamed answer has only this one)
    client_header_s: float = Field(10.0, gt=0)  # a client's request line and headers must arrive within it
    client_body_s: float = Field(30.0, gt=0)  # …and its body within this
    # an idle client connection is closed after it: longer than clients' own pool expiry (httpx 5 s, aiohttp 15 s),
    # so a client never reuses a connection the gateway is closing at that instant (a POST it cannot safely re-send)
    keep_alive_s: float = Field(30.0, gt=0)


class Circuit(Strict):
    failures_to_open: int = Field(3, gt=0)  # consecutive failures that open an upstream's breaker…
    distinct_keys_to_open: int = Field(2, gt=0)  # …from at least this many keys (else a health probe decides)
    open_s: float = Field(10.0, gt=0)  # then one probe request is let through (half-open)
    probe_timeout_s: float = Field(2.0, gt=0)  # a health probe (GET /models) fails after this long


class BudgetConfig(Strict):
    team: str | None = None
    key: str | None = None  # key id (as `tokenomy gateway keys create` prints it)
    period: Literal["day", "month"] = "day"
    usd: float | None = Field(None, ge=0)
    tokens: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_owner(self) -> BudgetConfig:
        if (self.team is None) == (self.key is None):
            raise ValueError("a budget belongs to exactly one of team or key")
        if self.usd is None and self.tokens is None:
            raise ValueError("a budget needs usd, tokens or both")
        return self


class LedgerConfig(Strict):
    url: str = "sqlite"  # "sqlite" (state_dir/ledger.sqlite), a .sqlite path, or postgresql://...
    flush_interval_s: float = Field(0.2, gt=0)
    batch_rows: int = Field(500, gt=0)
    # issue 14, durability (ledger.py): the write-ahead journal under state_dir/journal/, an fsync per line
    # (power loss; without it a process crash loses nothing), rows held in memory while the database is down
    # (past it they are re-read from the journal), and where rows the database refuses are kept
    journal: bool = True
    journal_fsync: bool = False
    max_pending_rows: int = Field(100_000, gt=0)
    dead_letter: Path | None = None  # default: state_dir/ledger-dead-letter.jsonl


class SharedConfig(Strict):
    """issue 14: several gateway processes share budgets through Redis (shared.py); keys and limits through the
    ledger database: a change is announced on Redis pub/sub and every process reloads at once; each also polls the
    database's version counter every `poll_s`, the bound should a message be lost (state.py)."""

    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0; required by `tokenomy gateway --workers N`
    namespace: str = Field("tokenomy", min_length=1)  # prefix of every Redis key (one per deployment)
    poll_s: float = Field(0.25, gt=0, le=1)  # how often keys and limits are checked for changes (pub/sub's fallback)


class RouteConfig(Strict):
    """Validation on one route: its answers must pass `validators`, else the next tier up is asked."""

    validators: list[ValidatorConfig] = Field(min_length=1)
    max_escalations: int = Field(1, ge=0)  # tiers asked after the first, at most
    # buffer: hold a streamed answer until it is validated (costs TTFT: the client sees nothing until the
    # whole answer is in); record: pass the stream through and validate afterwards, only recording the verdict
    stream_validation: Literal["buffer", "record"] = "record"


class GatewayConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, lt=65536)
    state_dir: Path = Path(".tokenomy-gateway")  # the key-hashing secret and the SQLite ledger
    admin_key_env: str = "TOKENOMY_ADMIN_KEY"
    virtual_model: str = "auto"
    complexity_threshold: float = Field(0.5, gt=0, lt=1)  # p(complex) at or above it → class "complex"
    metrics_poll_s: float = Field(1.0, gt=0)
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    circuit: Circuit = Circuit()
    ledger: LedgerConfig = LedgerConfig()
    shared: SharedConfig = SharedConfig()  # issue 14: Redis for several processes
    key_secret_env: str = "TOKENOMY_KEY_SECRET"  # issue 14: the key-hashing secret, the same for every replica
    budgets: list[BudgetConfig] = []
    tiers: list[TierConfig] = Field(min_length=1)
    # validated routes, keyed by a model name clients ask for (the virtual model, a served model or a tier
    # name) or a request class (simple, complex; "named" for every named model); the model name wins
    routes: dict[str, RouteConfig] = {}

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        if self.virtual_model in names or self.virtual_model in {t.model for t in self.tiers}:
            raise ValueError(f"virtual_model '{self.virtual_model}' clashes with a tier or model name")
        return self

    def admin_key(self) -> str | None:
        return os.environ.get(self.admin_key_env) or None


def parse_config(raw: object, source: str = "gateway.yaml", base_dir: Path | None = None) -> GatewayConfig:
    """A GatewayConfig from parsed YAML; a relative state_dir is taken relative to the file."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise field_error(source, exc, ConfigError) from exc
    _check_routes(config, source)
    if base_dir is not None and not config.state_dir.is_absolute():
        config = config.model_copy(update={"state_dir": base_dir / config.state_dir})
    return config


ROUTE_CLASSES = (*CLASSES, "named")


def _check_routes(config: GatewayConfig, source: str) -> None:
    """Tier classes are ones the classifier produces; route keys name a class or a model clients may ask for;
    judge validators name configured tiers."""
    for i, tier in enumerate(config.tiers):
        for j, cls in enumerate(tier.classes):
            if cls not in CLASSES:
                close = difflib.get_close_matches(cls, CLASSES, n=2, cutoff=0.6)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"{source}: field 'tiers.{i}.classes.{j}' (tier '{tier.name}'): unknown request class '{cls}'."
                    f"{hint} (the classifier produces: {', '.join(CLASSES)})"
                )
    tiers = [t.name for t in config.tiers]
    models = {config.virtual_model, *tiers, *(t.model for t in config.tiers)}
    for key, route in config.routes.items():
        if key not in ROUTE_CLASSES and key not in models:
            known = ", ".join([*ROUTE_CLASSES, *sorted(models)])
            raise ConfigError(f"{source}: field 'routes.{key}': not a request class or model name (known: {known})")
        for i, validator in enumerate(route.validators):
            if validator.kind == "judge" and validator.tier not in tiers:
                raise ConfigError(
                    f"{source}: field 'routes.{key}.validators.{i}.tier': unknown tier '{validator.tier}' "
                    f"(tiers: {', '.join(tiers)})"
                )


def load_config(path: Path) -> GatewayConfig:
    """Read and validate gateway.yaml."""
    return parse_config(read_yaml(path, ConfigError), str(path), path.parent)
