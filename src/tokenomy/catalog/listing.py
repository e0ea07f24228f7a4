"""What `tokenomy catalog WHAT` lists: the models, accelerators, API prices or engine profiles the catalogue holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenomy.catalog.errors import CatalogError


@dataclass(frozen=True)
class Listing:
    """One catalogue as a table: its title, column names and rows of display strings."""

    title: str
    columns: list[str]
    rows: list[list[str]]

    def records(self) -> list[dict[str, str]]:
        """One mapping per row, column name to value (`tokenomy catalog --json`)."""
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def models_listing() -> Listing:
    """Every catalogue model: parameters (total and active), kind, attention, layers, context."""
    from tokenomy.catalog.models import load_model, model_ids
    from tokenomy.costmodel.params import param_counts

    rows = []
    for mid in model_ids():
        m = load_model(mid)
        p = param_counts(m)
        kind = "MoE" if m.is_moe else "dense"
        attn = "MLA" if m.uses_mla else f"GQA {m.n_kv_heads}kv" if m.n_kv_heads < m.n_heads else "MHA"
        rows.append(
            [
                mid,
                f"{p.total / 1e9:.2f}B",
                f"{p.active / 1e9:.2f}B",
                kind,
                attn,
                str(m.n_layers),
                f"{m.max_context_tokens:,}",
            ]
        )
    return Listing("models", ["id", "params", "active", "kind", "attention", "layers", "context"], rows)


def accelerators_listing() -> Listing:
    """Every accelerator: memory, bandwidth, dense TFLOP/s per format, link, TDP and on-demand $/h."""
    from tokenomy.catalog.accelerators import accelerators

    rows = [
        [
            a.id,
            f"{a.memory_gb:g} GiB",
            f"{a.memory_bandwidth_gb_s:,.0f} GB/s",
            " ".join(f"{k}:{v:g}" for k, v in a.dense_tflops.items()),
            f"{a.interconnect_gb_s:g} GB/s",
            f"{a.tdp_w:g} W" if a.tdp_w else "—",
            f"${a.usd_per_hour.on_demand:.2f}" if a.usd_per_hour.on_demand else "—",
        ]
        for a in accelerators().values()
    ]
    return Listing("accelerators", ["id", "memory", "bandwidth", "dense TFLOP/s", "link/dir", "TDP", "$/h"], rows)


def apis_listing() -> Listing:
    """Every API price: provider, model, the open model it serves, $/Mtok in, out and cached, and the date."""
    from tokenomy.catalog.prices import api_prices

    rows = [
        [
            p.provider,
            p.model,
            p.catalog_model or "—",
            f"{p.usd_per_mtok_input:g}",
            f"{p.usd_per_mtok_output:g}",
            "—" if p.usd_per_mtok_cached_input is None else f"{p.usd_per_mtok_cached_input:g}",
            p.price_date,
        ]
        for p in api_prices()
    ]
    return Listing(
        "API prices ($/Mtok)", ["provider", "model", "open model", "input", "output", "cached", "date"], rows
    )


def engines_listing() -> Listing:
    """Every engine profile: efficiencies, step overhead, overlap, sequence limit and what it was fitted on."""
    from tokenomy.catalog.profiles import load_profile, profile_names

    rows = []
    for name in profile_names():
        p = load_profile(name)
        rows.append(
            [
                name,
                f"{p.bw_efficiency:.2f}",
                f"{p.flops_efficiency:.2f}",
                f"{p.step_overhead_s * 1e3:.2f} ms",
                f"{p.overlap_k:.2f}",
                str(p.max_num_seqs),
                p.fitted_on or "defaults",
            ]
        )
    columns = ["engine", "bw eff", "flops eff", "step overhead", "overlap k", "max seqs", "fitted on"]
    return Listing("engine profiles", columns, rows)


LISTINGS: dict[str, Callable[[], Listing]] = {
    "models": models_listing,
    "model": models_listing,
    "gpus": accelerators_listing,
    "gpu": accelerators_listing,
    "accelerators": accelerators_listing,
    "apis": apis_listing,
    "api": apis_listing,
    "prices": apis_listing,
    "engines": engines_listing,
    "profiles": engines_listing,
}


def catalog_listing(what: str) -> Listing:
    """The listing `tokenomy catalog WHAT` prints; CatalogError for an unknown WHAT."""
    if what not in LISTINGS:
        raise CatalogError(f"unknown catalogue '{what}': choose models, gpus, apis or engines")
    return LISTINGS[what]()
