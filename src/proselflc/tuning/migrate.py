"""`proselflc migrate PATH`: rewrite, once, a sweep file or directory, or a run config or directory, of an earlier form.

The run-time loader reads only the current form, and its refusal of an earlier one names this command.
Earlier forms rewritten here:
- `searcher: {name: optuna, sampler: S, ...}` (Optuna behind one generic searcher) -> `searcher: {name: S, ...}`;
- ASHA's settings in the `asha:` section (`grace_period`, `reduction_factor`, `brackets`) -> `scheduler:
  {name: asha, ...}`, `asha:` keeping only `max_t`. Where a `scheduler:` section is also given (as an earlier
  sweep directory's `sweep.yaml` records it, every `asha` field written out), `asha`'s settings at their
  defaults are dropped: they meant nothing then.
- an earlier sweep directory's (manifest version 1) final re-runs, whose params.json nested the params under
  `final_run`, are written flat with their phase, as `proselflc report` reads them (the loader refuses the
  nested form, naming this command).
- an earlier sweep directory's (manifest version 2) saved Ray state: the searcher's pickled `__dict__`, Ray's
  limiter counting the trials itself, a monitor without the scheduler, the one-snapshot `.state-backup/` layout;
  verified under the user's key first, then rewritten and signed again (`tuning.state_migration`), the manifest
  going to version 3, which `--resume` requires.
- `data:` sections that hold options their dataset does not take (`test_fraction`, `task`, `max_length`,
  `tokenizer`, `image_size`, `rotation_degrees`: earlier versions made them fields of every dataset and wrote them
  all into each run's config.yaml and sweep's sweep.yaml) lose those keys, at any value: they meant nothing for that
  dataset. A sweep's `base.data` and a run config's `data` are rewritten; the keys the dataset takes stay.
A sweep file or run config is rewritten in place, its comments, key order and layout kept (ruamel.yaml's round trip), after a
copy of it is kept beside it; a sweep directory's `sweep.yaml` (what `--resume` compares the sweep file with:
migrate both) and a run directory's `config.yaml` (what `train --resume` compares the config with) are rewritten in
place.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from proselflc import plugins
from proselflc.config import EARLIER_DATA_FIELDS, ConfigError, DataConfig, read_yaml
from proselflc.dataset_registry import DATASETS
from proselflc.io import atomic_write_text
from proselflc.sweep_contract import (
    LEGACY_FINAL_RUN,
    MANIFEST_FILE,
    ONE_TUNER_VERSION,
    PHASE,
    SWEEP_FILE,
    read_manifest,
)
from proselflc.tuning.config import ASHA_SETTINGS
from proselflc.tuning.search import AshaScheduler
from proselflc.tuning.state_migration import migrate_sweep_state

#: Suffix of the copy of a sweep file kept before it is rewritten.
KEPT_SUFFIX = ".before-migrate"
#: The file that makes a directory a run directory (`proselflc train --out DIR`).
RUN_CONFIG_FILE = "config.yaml"


def earlier_searcher(section: Any) -> bool:
    """Whether a `searcher:` section is in the earlier `{name: optuna, sampler: ...}` form."""
    return isinstance(section, dict) and (section.get("name") == "optuna" or "sampler" in section)


def migrate_searcher(raw: dict[str, Any]) -> list[str]:
    """Rewrite `raw["searcher"]` from the earlier form in place; what changed, as sentences."""
    section = raw.get("searcher")
    if not earlier_searcher(section):
        return []
    name = section.get("sampler") or "tpe"
    raw["searcher"] = {"name": name, **{k: v for k, v in section.items() if k not in ("name", "sampler")}}
    return [f"searcher: {{name: optuna, sampler: {name}}} -> searcher: {{name: {name}}}"]


def migrate_asha(raw: CommentedMap) -> list[str]:
    """Move ASHA's settings from `asha:` to `scheduler: {name: asha}` in place (`raw`: ruamel.yaml's round-trip
    mapping, whose `insert` puts the scheduler where the user wrote the settings); what changed, as sentences."""
    asha = raw.get("asha")
    if not isinstance(asha, dict) or not any(k in asha for k in ASHA_SETTINGS):
        return []
    settings = {k: asha[k] for k in ASHA_SETTINGS if k in asha}
    kept = {k: v for k, v in asha.items() if k not in ASHA_SETTINGS}
    if raw.get("scheduler") is not None:
        # The earlier asha: section's defaults were ASHA's: beside a scheduler: section they meant nothing.
        if any(AshaScheduler.model_fields[k].default != v for k, v in settings.items()):
            return []  # both set early stopping, which no version accepted: the loader names the conflict
        change = f"asha: {{{', '.join(settings)}}} (defaults, unused beside scheduler:) dropped"
    else:
        raw.insert(list(raw).index("asha"), "scheduler", _laid_out_like(asha, {"name": "asha", **settings}))
        if not kept:  # the line becomes the scheduler's, with its comment; else the comment stays on asha's line
            _move_comment(raw, "asha", "scheduler")
        change = f"asha: {{{', '.join(settings)}}} -> scheduler: {{name: asha, {', '.join(settings)}}}"
    if kept:
        raw["asha"] = _laid_out_like(asha, kept)
    else:
        del raw["asha"]
    return [change]


def _laid_out_like(original: Any, values: dict[str, Any]) -> CommentedMap:
    """`values` as a mapping written like `original`: on one line (`{...}`) if the user wrote it so."""
    mapping = CommentedMap(values)
    if isinstance(original, CommentedMap) and original.fa.flow_style():
        mapping.fa.set_flow_style()
    return mapping


def _move_comment(raw: CommentedMap, old: str, new: str) -> None:
    """The end-of-line comment the user wrote after key `old` (e.g. `asha: {...}  # rungs at 15, 30, 60`), now
    after `new`, in the same column where the new line leaves room."""
    token = (raw.ca.items.get(old) or [None, None, None])[2]
    if token is not None and token.value.strip().startswith("#"):
        raw.yaml_add_eol_comment(token.value.strip(), new, column=token.column)


def migrate_data(raw: dict[str, Any], root: Path) -> list[str]:
    """Drop from a sweep's `base.data` (or a run config's `data`) the earlier fields its dataset does not take.

    The dataset is looked up after the file's plugins are imported (`root`: the file's directory), so a dataset a
    plugin registers is known. Returns what changed, as sentences."""
    base = raw.get("base")
    run, where = (base, "base.data") if isinstance(base, dict) else (raw, "data")
    section = run.get("data")
    if not isinstance(section, dict) or not any(key in section for key in EARLIER_DATA_FIELDS):
        return []
    specs = [*(raw.get("plugins") or []), *(run.get("plugins") or [] if run is not raw else [])]
    plugins.load(plugins.resolve(specs, root))
    name = str(section.get("name", DataConfig.model_fields["name"].default))
    params = DATASETS.entry(name).params
    dropped = [key for key in EARLIER_DATA_FIELDS if key in section and key not in params]
    for key in dropped:
        del section[key]
    if not dropped:
        return []
    return [f"{where}: {{{', '.join(dropped)}}} dropped (written by an earlier version; dataset {name!r} takes no such option)"]


def migrate(path: str | Path, *, trust_state: bool = False) -> list[str]:
    """Rewrite the sweep file or directory, or run config or directory, at `path` into the current form; what
    changed, as sentences.

    Nothing is written when nothing is in an earlier form (a second run changes nothing). `trust_state` rewrites a
    sweep directory's saved Ray state without verifying its signatures (for a directory the user vouches for).
    """
    if "://" in str(path):
        raise ConfigError(
            f"migrate: {str(path)!r} is on object storage; migrate works on a local directory: copy the sweep "
            "directory down, migrate it, and copy it back (every file, .state-backup/ included)"
        )
    path = Path(path)
    if path.is_dir():
        if not (path / SWEEP_FILE).is_file() and (path / RUN_CONFIG_FILE).is_file():
            return _migrate_run_directory(path)
        return _migrate_directory(path, trust_state=trust_state)
    if not path.is_file():
        raise ConfigError(
            f"migrate: {str(path)!r} is neither a sweep file nor a sweep directory (nor a run config or run directory)"
        )
    changes, text = _rewritten(path)
    if changes:
        shutil.copy2(path, path.with_name(path.name + KEPT_SUFFIX))
        atomic_write_text(path, text)
    return changes


def _rewritten(path: Path) -> tuple[list[str], str]:
    """What migrating the YAML file at `path` changes, and its new text with the user's comments and layout.

    The hardened loader reads it first (its clear refusals of hostile or broken files hold here too); the rewrite
    edits ruamel.yaml's round-trip form of the same text, whose mappings are dicts to the migrations."""
    read_yaml(path)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # long lines stay as the user wrote them
    document = yaml.load(path.read_text(encoding="utf-8"))
    changes = migrate_searcher(document) + migrate_asha(document) + migrate_data(document, path.parent)
    out = io.StringIO()
    yaml.dump(document, out)
    return changes, out.getvalue()


def _migrate_run_directory(run_dir: Path) -> list[str]:
    """A run directory's config.yaml, rewritten in place (`train --resume` compares the run's config with it)."""
    changes, text = _rewritten(run_dir / RUN_CONFIG_FILE)
    if changes:
        atomic_write_text(run_dir / RUN_CONFIG_FILE, text)
    return changes


def _migrate_directory(sweep_dir: Path, *, trust_state: bool) -> list[str]:
    sweep_file = sweep_dir / SWEEP_FILE
    if not sweep_file.is_file():
        raise ConfigError(
            f"migrate: {str(sweep_dir)!r} holds no {SWEEP_FILE} nor {RUN_CONFIG_FILE}: not a sweep or run directory"
        )
    changes: list[str] = []
    version = read_manifest(sweep_dir).version if (sweep_dir / MANIFEST_FILE).is_file() else None
    if version is not None and version < ONE_TUNER_VERSION:
        # Its trials ran one Tuner per study: `report` reads it once its final re-runs' params are flat; it
        # cannot be resumed by this version.
        rewritten = _flatten_final_runs(sweep_dir)
        if rewritten:
            changes.append(f"{rewritten} final re-runs' params.json: {{{LEGACY_FINAL_RUN}: {{...}}}} -> "
                           f"{{{PHASE}: final, ...}}")
        changes.append(
            f"{MANIFEST_FILE} is version 1 (one Tuner per study): `proselflc report` reads it, "
            "`--resume` needs the version that wrote it"
        )
    elif version is not None:
        changes += migrate_sweep_state(sweep_dir, trust_state=trust_state)
    rewritten, text = _rewritten(sweep_file)
    if rewritten:
        atomic_write_text(sweep_file, text)
    return rewritten + changes


def _flatten_final_runs(sweep_dir: Path) -> int:
    """An earlier version's final re-runs nested their params under `final_run`: write them flat, with the
    phase, as every trial's params are now; how many were rewritten."""
    count = 0
    for params in sorted(sweep_dir.rglob("params.json")):
        try:
            raw = json.loads(params.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a torn file: the analysis reports it as it is
        if isinstance(raw, dict) and isinstance(raw.get(LEGACY_FINAL_RUN), dict):
            atomic_write_text(params, json.dumps({PHASE: "final", **raw[LEGACY_FINAL_RUN]}) + "\n")
            count += 1
    return count
