"""Where watermon finds its configuration, data directory and database.

Everything comes from environment variables so that nothing secret lives in files;
the defaults make a fresh clone work with an embedded SQLite database under ``var/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_root() -> Path:
    # An editable install runs from the clone; elsewhere use the working directory.
    return PROJECT_ROOT if (PROJECT_ROOT / "config").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    config_dir: Path
    data_dir: Path
    db_url: str

    @classmethod
    def from_env(cls) -> Settings:
        root = _default_root()
        data_dir = Path(os.environ.get("WATERMON_DATA_DIR", root / "var")).resolve()
        config_dir = Path(os.environ.get("WATERMON_CONFIG", root / "config")).resolve()
        db_url = os.environ.get("WATERMON_DB_URL") or f"sqlite:///{data_dir / 'watermon.db'}"
        return cls(config_dir=config_dir, data_dir=data_dir, db_url=db_url)
