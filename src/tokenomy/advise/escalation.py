"""Per class: answer with the advised tier only, or try a cheaper API first and escalate when its answer fails?

The advised tier (the "top" of the chain) costs what `class_costs` says per request. Each cheaper API allowed
for the class is a candidate first tier, priced at the class's mean lengths. Pass rates come from the workload
(`pass_rates: {tier or provider/model: rate}` per class) or, failing that, from the shipped quality data as a
proxy: the lowest score (0-100) among the class's floor benchmarks, read as the share of answers that pass
(the advised tier defaults to 1). Both chains go through `costmodel.escalation.estimate_chain`; the cheaper per
valid answer is picked, and the break-even pass rate p* = c_cheap · V_top / C_top is reported
(trying the cheap tier first pays only above it).
"""

from __future__ import annotations

from typing import Any

from tokenomy.advise.baselines import class_means
from tokenomy.advise.search import api_usd_per_request
from tokenomy.advise.workload import ClassLoad, Workload
from tokenomy.costmodel.escalation import EscalationTier, estimate_chain

CHEAP_FIRST, TOP_ONLY = "cheap tier first", "top tier only"


def proxy_pass_rate(workload: Workload, api: str, floors: dict[str, float]) -> float | None:
    """The lowest published score of `api` among the floor benchmarks, / 100 (None without floors or scores)."""
    scores = [workload.quality.api_score(api, benchmark) for benchmark in floors]
    if not scores or any(s is None for s in scores):
        return None
    return min(max(min(scores) / 100.0, 0.0), 1.0)


def pass_rate_of(workload: Workload, c: ClassLoad, tier: str, default: float | None) -> tuple[float | None, str]:
    """(pass rate, where it came from) of a tier for a class: the workload's figure, the quality proxy, a default."""
    given = c.spec.pass_rates.get(tier)
    if given is not None:
        return given, "workload"
    proxy = proxy_pass_rate(workload, tier, c.spec.quality)
    if proxy is not None and default is None:
        return proxy, "quality proxy"
    return default, "assumed"


def class_chain(workload: Workload, c: ClassLoad, served_by: str, top_usd_per_request: float) -> dict[str, Any]:
    """The cheaper of top-tier-only and the best cheap-API-first chain for one class, per valid answer."""
    top_rate, top_source = pass_rate_of(workload, c, served_by, default=1.0)
    top = EscalationTier(served_by, top_usd_per_request, 0.0, top_rate or 0.0)
    top_only = estimate_chain([top])
    best: tuple[Any, EscalationTier, str] | None = None
    isl, osl = class_means(c)
    for api in workload.apis if c.spec.allow_api else ():
        usd = api_usd_per_request(api, isl, osl)
        rate, source = pass_rate_of(workload, c, api.name, default=None)
        if api.name == served_by or rate is None or usd >= top_usd_per_request:
            continue
        chain = estimate_chain([EscalationTier(api.name, usd, 0.0, rate), top])
        if best is None or chain.usd_per_valid_answer < best[0].usd_per_valid_answer:
            best = (chain, EscalationTier(api.name, usd, 0.0, rate), source)
    out: dict[str, Any] = {
        "top_tier": served_by,
        "top_pass_rate": top_rate,
        "top_pass_rate_source": top_source,
        "top_usd_per_valid_answer": top_only.usd_per_valid_answer,
        "choice": TOP_ONLY,
        "cheap_tier": None,
    }
    if best is None:
        return out
    chain, cheap, source = best
    cheaper = chain.usd_per_valid_answer < top_only.usd_per_valid_answer
    out.update(
        {
            "choice": CHEAP_FIRST if cheaper else TOP_ONLY,
            "cheap_tier": cheap.name,
            "cheap_usd_per_request": cheap.usd_per_request,
            "cheap_pass_rate": cheap.pass_rate,
            "cheap_pass_rate_source": source,
            "chain_usd_per_valid_answer": chain.usd_per_valid_answer,
            "chain_valid_probability": chain.valid_probability,
            "break_even_pass_rate": chain.break_even_pass_rate,
            "saving_per_valid_answer": 1.0 - chain.usd_per_valid_answer / top_only.usd_per_valid_answer
            if top_only.usd_per_valid_answer
            else None,
        }
    )
    return out


def add_chains(workload: Workload, costs: dict[str, dict[str, Any]]) -> None:
    """Hook for `output.class_costs`: add each class's chain choice under "escalation"."""
    for c in workload.classes:
        entry = costs.get(c.name)
        per_request = entry.get("usd_per_request") if entry else None
        if entry is None or per_request is None:
            continue
        entry["escalation"] = class_chain(workload, c, entry["served_by"], per_request)
