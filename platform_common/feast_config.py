"""One Feast configuration for the CLI and for Python, following SHOPRANK_HOME and SHOPRANK_PROFILE.

The committed `feature_repo/feature_store.yaml` is the local profile pointing at the default state folder, so
`feast` works inside `feature_repo/` with no set-up. For any other state folder or profile the same file is
rendered with absolute paths into `$SHOPRANK_HOME/feast/feature_store.yaml`; `make` hands it to the CLI
through FEAST_FS_YAML_FILE_PATH and Python opens the store on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from platform_common.settings import FEATURE_REPO_DIR, Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

PROFILE_FILES = {"local": "feature_store.yaml", "prod": "feature_store.prod.yaml"}


def rendered_yaml_path(settings: Settings) -> Path:
    return settings.feast_dir / "feature_store.yaml"


def render_feature_store_yaml(settings: Settings | None = None) -> Path:
    """Write the active profile's feature_store.yaml with absolute state paths; return its path."""
    settings = settings or get_settings()
    template = FEATURE_REPO_DIR / PROFILE_FILES[settings.profile]
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    feast_dir = settings.feast_dir
    feast_dir.mkdir(parents=True, exist_ok=True)
    registry = config.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type", "file") == "file":
        registry["path"] = str(feast_dir / "registry.db")
    online = config.get("online_store", {})
    if online.get("type") == "sqlite":
        online["path"] = str(feast_dir / "online_store.db")
    out = rendered_yaml_path(settings)
    header = f"# Rendered from feature_repo/{template.name} for {settings.home_dir}; do not edit.\n"
    new_text = header + yaml.safe_dump(config, sort_keys=False)
    # Rewriting an unchanged file would bump its mtime and make Feast reload the registry for nothing.
    if not out.exists() or out.read_text() != new_text:
        out.write_text(new_text)
    return out


def get_feature_store(settings: Settings | None = None) -> FeatureStore:
    from feast import FeatureStore

    settings = settings or get_settings()
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=render_feature_store_yaml(settings))


if __name__ == "__main__":
    print(render_feature_store_yaml())
