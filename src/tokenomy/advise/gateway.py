"""The recommended plan as a gateway config (the schema of `tokenomy.gateway.config`, `tokenomy gateway --config`).

Self-hosted tiers carry their deployment (model, accelerator, GPUs per replica, precision, engine)
so the gateway prices them with the cost model; API tiers name their catalogue price. A tier's
`classes` are the gateway classifier's classes of the workload classes it serves (a class's
`gateway_class`, default its own name); the gateway sends each request to the cheapest eligible
tier and spills to the next past the tier's TTFT SLO. Upstream URLs are placeholders to edit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from tokenomy.advise.workload import Workload
from tokenomy.catalog.models import load_model

PROVIDER_URLS = {  # OpenAI-compatible endpoints of API providers
    "OpenAI": "https://api.openai.com/v1",
    "Google": "https://generativelanguage.googleapis.com/v1beta/openai",
    "Mistral": "https://api.mistral.ai/v1",
    "DeepInfra": "https://api.deepinfra.com/v1/openai",
    "Groq": "https://api.groq.com/openai/v1",
}


def _gateway_classes(workload: Workload, classes: list[str]) -> list[str]:
    spec = workload.spec.classes
    return sorted({spec[c].gateway_class or c for c in classes})


def _served_name(model_id: str) -> str:
    """The name a vLLM server would serve the model under: its Hugging Face repository."""
    return str(load_model(model_id).published.get("hf_repo") or model_id)


def gateway_config(report: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """A gateway.yaml mapping for the report's recommended tiers (self-hosted first, then the APIs they use)."""
    tiers: list[dict[str, Any]] = []
    api_classes: dict[str, set[str]] = {}
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            tiers.append(
                {
                    "name": t["name"],
                    "url": f"http://{t['name']}.internal:8000/v1",
                    "model": _served_name(t["model"]),
                    "classes": _gateway_classes(workload, t["classes"]),
                    "deployment": {
                        "model": t["model"],
                        "gpu": t["gpu"],
                        "count": t["gpus_per_replica"],
                        "precision": t["precision"],
                        "engine": t["engine"],
                    },
                    "ttft_slo_s": t["slo"]["ttft_s"],
                }
            )
            for cls, api in t["spill_api"].items():
                api_classes.setdefault(api, set()).add(cls)
        elif t["kind"] == "api":  # a batch tier's requests go to the Batch API, not through the gateway
            for cls, api in t["apis"].items():
                api_classes.setdefault(api, set()).add(cls)
    for api, classes in sorted(api_classes.items()):
        provider, _, model = api.partition("/")
        tiers.append(
            {
                "name": f"api-{model.replace('/', '-')}",
                "url": PROVIDER_URLS.get(provider, "https://api.example.com/v1"),
                "model": model,
                "classes": _gateway_classes(workload, sorted(classes)),
                "price": api,
                "api_key_env": f"{provider.upper().replace(' ', '_')}_API_KEY",
            }
        )
    return {"virtual_model": "auto", "tiers": tiers}


def header(report: dict[str, Any]) -> str:
    usd = report["recommendation"]["usd_per_day"]["simulated"]
    lines = [
        f"# Gateway config written by `tokenomy advise` for workload '{report['workload']['name']}'.",
        f"# Plan: ${usd:,.2f}/day." if usd is not None and math.isfinite(usd) else "# Plan: see the advisor report.",
        "# Replace each self-hosted tier's url with its server; replicas per hour, KV precision and",
        "# speculative decoding are engine settings from the advisor report (`tokenomy advise --json`).",
    ]
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            spec = f", speculative draft {t['speculative']['draft']}" if t["speculative"] else ""
            lines.append(
                f"#   {t['name']}: KV {t['kv_precision']}, max batch {t['max_batch']}{spec}, "
                f"{t['reserved']} reserved, up to {t['peak_replicas']} replicas at peak"
            )
        elif t["kind"] == "batch":
            apis = ", ".join(sorted(set(t["apis"].values())))
            classes = ", ".join(t["classes"])
            lines.append(f"#   {t['name']}: classes {classes} go to the Batch API of {apis} (24 h), not here")
    return "\n".join(lines) + "\n"


def write_gateway_config(report: dict[str, Any], workload: Workload, path: Path) -> dict[str, Any]:
    """Write the config YAML and check it with the gateway's own validator; returns the mapping written."""
    config = gateway_config(report, workload)
    path.write_text(header(report) + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    from tokenomy.gateway.config import load_config  # the gateway's schema is the contract

    load_config(path)
    return config
