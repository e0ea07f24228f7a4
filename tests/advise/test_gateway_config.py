"""The emitted gateway config loads with the gateway's own schema and routes every class."""

from __future__ import annotations

from pathlib import Path

from tokenomy.advise.gateway import write_gateway_config
from tokenomy.gateway.config import load_config


def test_emitted_gateway_config_loads_and_covers_every_class(small_advice, small_report, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    write_gateway_config(small_report, small_advice.workload, path)
    config = load_config(path)
    classes = {c for t in config.tiers for c in t.classes}
    assert classes == {"simple", "complex"}  # the workload's gateway_class mapping
    gpu_tiers = [t for t in config.tiers if t.self_hosted]
    planned = [t for t in small_report["recommendation"]["tiers"] if t["kind"] == "gpu"]
    assert [t.name for t in gpu_tiers] == [t["name"] for t in planned]
    for tier, plan in zip(gpu_tiers, planned, strict=True):
        assert tier.deployment.model == plan["model"] and tier.deployment.gpu == plan["gpu"]
        assert tier.deployment.count == plan["gpus_per_replica"] and tier.deployment.precision == plan["precision"]
    for api in (t for t in config.tiers if not t.self_hosted):
        assert api.price and api.api_key_env
    assert path.read_text().startswith("# Gateway config written by `tokenomy advise`")
