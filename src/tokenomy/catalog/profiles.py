"""Engine profiles on disk: one JSON file per engine under data/profiles (written by `tokenomy calibrate`)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.models import DATA_DIR
from tokenomy.costmodel.profile import EngineProfile

PROFILE_DIR = DATA_DIR / "profiles"
# Engines that are a different build on one accelerator vendor, with their own profile there: (engine, catalogue
# vendor) -> (profile, what the note calls it, what its fit rows are). vLLM on AMD is AMD's ROCm/vllm build (its own
# hipBLASLt GEMMs and AITER attention/MoE kernels), fitted on the ROCm vLLM rows (measurements_rocm_vllm.csv). SGLang
# on AMD is its ROCm build, which calls the same kinds of kernels (hipBLASLt, AITER); with no ROCm SGLang rows shipped,
# its device efficiencies are vllm-rocm's fitted ones and its host costs SGLang's (calibrate/fit.py: ROCM_BUILDS).
VENDOR_PROFILES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("vllm", "AMD"): ("vllm-rocm", "vLLM on ROCm", "ROCm vLLM rows"),
    ("sglang", "AMD"): ("sglang-rocm", "SGLang on ROCm", "ROCm SGLang rows"),
}


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in PROFILE_DIR.iterdir() if p.name.endswith(".json"))


def _key(name: str) -> str:
    """A profile name as the catalogue files it (lower case; trtllm / trt-llm spelled tensorrt-llm)."""
    return name.lower().replace("trtllm", "tensorrt-llm").replace("trt-llm", "tensorrt-llm")


def profile_name_for(engine: str, gpu: str, accelerators_file: str | None = None) -> str:
    """The profile `engine` runs with on accelerator `gpu` (VENDOR_PROFILES: vllm on an AMD GPU is vllm-rocm);
    `engine` itself for a profile JSON path, any other engine, or an accelerator the catalogue does not know
    (resolving the deployment then names that error)."""
    key = _key(engine)
    if engine.endswith(".json") or not any(e == key for e, _ in VENDOR_PROFILES):
        return engine
    try:
        vendor = load_accelerator(gpu, accelerators_file).vendor
    except CatalogError:
        return engine
    return VENDOR_PROFILES.get((key, vendor), (engine,))[0]


def engine_profile(engine: str, gpu: str, accelerators_file: str | None = None) -> EngineProfile:
    """The profile an engine runs with on an accelerator (profile_name_for), loaded: the one place a name and a
    GPU become a profile, for plan, simulate, validate, advise and watch alike."""
    return load_profile(profile_name_for(engine, gpu, accelerators_file))


def load_profile(name: str) -> EngineProfile:
    """An engine profile by name ('tensorrt-llm', 'vllm', 'sglang', 'generic') or a JSON file path."""
    path = Path(name)
    if name.endswith(".json") and path.is_file():
        text, where = path.read_text(), str(path)
    else:
        key = _key(name)
        if key not in profile_names():
            raise unknown_name_error("engine profile", name, profile_names())
        text, where = (PROFILE_DIR / f"{key}.json").read_text(), f"catalogue profiles/{key}.json"
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object of profile fields, got a {type(data).__name__}")
        return EngineProfile.from_dict(data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise CatalogError(f"{where}: not a valid engine profile ({exc})") from exc


def save_profile(profile: EngineProfile, path: Path) -> None:
    path.write_text(json.dumps(profile.to_dict(), indent=2) + "\n")


def profile_notes(profile: EngineProfile) -> list[str]:
    """What plan and simulate print about the profile: which vendor build it is (VENDOR_PROFILES) and how many rows
    fitted it, and one line when it borrows another engine's fitted parameters."""
    notes = [
        f"{label}: profile {name}, fitted on {profile.fit['rows']} {rows}"
        if profile.fit.get("rows")
        else f"{label}: profile {name}, {profile.fitted_on}"
        for name, label, rows in VENDOR_PROFILES.values()
        if profile.name == name
    ]
    if not profile.borrows_from:
        return notes
    borrowed = ", ".join(profile.borrowed) or "its efficiencies and overheads"
    return [
        *notes,
        f"engine profile '{profile.name}' borrows {borrowed} from the {profile.borrows_from} fit "
        f"(its own published measurements, if any, do not fit them: see the profile's notes); its scheduler and memory "
        "settings are its own",
    ]
