"""Engine profiles on disk: one JSON file per engine under data/profiles (written by `tokenomy calibrate`)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.models import DATA_DIR
from tokenomy.costmodel.profile import EngineProfile

PROFILE_DIR = DATA_DIR / "profiles"


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in PROFILE_DIR.iterdir() if p.name.endswith(".json"))


def load_profile(name: str) -> EngineProfile:
    """An engine profile by name ('tensorrt-llm', 'vllm', 'sglang', 'generic') or a JSON file path."""
    path = Path(name)
    if name.endswith(".json") and path.is_file():
        text, where = path.read_text(), str(path)
    else:
        key = name.lower().replace("trtllm", "tensorrt-llm").replace("trt-llm", "tensorrt-llm")
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
    """One line when the profile borrows another engine's fitted parameters (what plan and simulate print)."""
    if not profile.borrows_from:
        return []
    borrowed = ", ".join(profile.borrowed) or "its efficiencies and overheads"
    return [
        f"engine profile '{profile.name}' borrows {borrowed} from the {profile.borrows_from} fit "
        f"(its own published measurements cannot fit them); its scheduler and memory settings are its own"
    ]
