"""Run directories: each run's identity, and what a new or resumed run may find there.

Every run gets a random id at its first start (``run_id``, 32 hex digits). It is written into
each checkpoint, into the first line of ``config.yaml`` (a comment, with a SHA-256 of the options
below it) and into every ``metrics.jsonl`` record, so the three files of a directory can be told
to belong to one run:

- a new run (no ``--resume``) refuses a directory that already holds a run's files, unless forced
  (then that run's files are deleted first: a new run never appends to another's log);
- a resumed run refuses a ``config.yaml`` or metrics records of another run than its checkpoint's
  (a checkpoint copied or linked from another run's directory), unless forced (then the
  checkpoint's run continues: the other run's records are dropped and ``config.yaml`` rewritten);
- a resumed run takes its options from the checkpoint, so a ``config.yaml`` edited since the run
  wrote it (its SHA-256 no longer matches) is refused when the edit differs from the options the
  run is about to use, naming the keys, unless forced;
- a checkpoint without an id (written by an earlier fastgp) resumes with a warning and is given an
  id then, if nothing in the directory has one (nothing can then be checked).

TensorBoard event files (``log.tensorboard``, in ``tensorboard/``) end their name with the id of
the run that wrote them: they count as that run's files in every rule above (a forced new run
deletes them, a forced resume deletes another run's).

Lines of ``metrics.jsonl`` that are not records (not JSON, or JSON without an int ``step``) are
dropped on resume with a warning naming ``file:line``; every valid record up to the checkpoint's
step is kept. A torn last line (a process killed while appending) is dropped silently.

Every check only reads files, so under torch.distributed each rank reaches the same decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import uuid

import yaml

from . import config
from .checkpoint import NAME as CHECKPOINT
from .checkpoint import CheckpointError

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
PICTURES = ("samples.png", "curves.png")
# What a run writes into its directory (and a forced new run deletes first).
RUN_FILES = (CHECKPOINT, CONFIG, METRICS, *PICTURES)
ID_KEY = "run_id"
TENSORBOARD = "tensorboard"  # the folder of the event files (log.tensorboard)
_EVENTS = re.compile(r"events\.out\.tfevents\..*\.([0-9a-f]{32})")  # SummaryWriter's name + our suffix
_ID = re.compile(r"[0-9a-f]{32}")
_HEADER = re.compile(r"# fastgp-train run ([0-9a-f]{32}), options sha256 ([0-9a-f]{64})\n")
_NOTE = "# --resume takes the options from checkpoint.pt: change them with --set, not here\n"


class RunDirError(CheckpointError):
    """A run directory that holds another run, or cannot be written."""


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def event_files(out_dir: str) -> dict[str, str]:
    """{path: run id} of the TensorBoard event files a run wrote into ``out_dir/tensorboard``
    (other files there are the user's and are left alone)."""
    folder = os.path.join(out_dir, TENSORBOARD)
    if not os.path.isdir(folder):
        return {}
    return {os.path.join(folder, name): m.group(1) for name in sorted(os.listdir(folder))
            if (m := _EVENTS.fullmatch(name)) is not None}


# ------------------------------------------------------------------------------------------------
# config.yaml: the options, under a header naming the run and fingerprinting them
# ------------------------------------------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_text(cfg: dict, run_id: str) -> str:
    body = _NOTE + config.dump(cfg)
    return f"# fastgp-train run {run_id}, options sha256 {_sha(body)}\n" + body


def write_config(out_dir: str, cfg: dict, run_id: str) -> None:
    path = os.path.join(out_dir, CONFIG)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_text(cfg, run_id))
    except OSError as e:
        raise RunDirError(f"cannot write {path}: {e.strerror or e}") from None


def read_config_header(path: str) -> tuple[str | None, bool, str]:
    """(run id of the header or None, whether the text below it is as the run wrote it, the text)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    first, _, body = text.partition("\n")
    match = _HEADER.fullmatch(first + "\n")
    if match is None:
        return None, False, text
    return match.group(1), match.group(2) == _sha(body), text


def _config_edits(text: str, saved: dict, cfg: dict) -> list[str]:
    """The options of an edited config.yaml that the resumed run would lose: those that differ
    from ``cfg`` (the run's options now) and from ``saved`` (the checkpoint's: a config.yaml
    without our header, from an earlier fastgp, is compared as it was written). One entry naming
    the problem when it is not a valid config any more."""
    try:
        edited = config.flatten(config.validate(yaml.load(text, Loader=config._Loader) or {}))
    except (yaml.YAMLError, config.ConfigError) as e:
        return [f"it is no longer a valid config ({' '.join(str(e).split())})"]
    now, saved = config.flatten(cfg), config.flatten(saved)
    return [f"{k}: {edited[k]!r} there, {now[k]!r} in the run" for k in config.SCHEMA
            if edited[k] != now[k] and edited[k] != saved.get(k)]


# ------------------------------------------------------------------------------------------------
# metrics.jsonl
# ------------------------------------------------------------------------------------------------


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"its step is {step!r}, not an int >= 0"
    if ID_KEY in record and not is_id(record[ID_KEY]):
        return f"its {ID_KEY} is {record[ID_KEY]!r}, not 32 hex digits"
    return None


def read_metrics(path: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """([(line number, record)] of the valid records, ["file:line: why" of the other lines]);
    a torn last line (no newline, not JSON) is neither."""
    records, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            bad.append(f"{path}:{number}: an empty line")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                continue  # torn by a kill while appending: logged again after the checkpoint
            bad.append(f"{path}:{number}: not JSON")
            continue
        problem = _record_problem(record)
        if problem:
            bad.append(f"{path}:{number}: {problem}")
        else:
            records.append((number, record))
    return records, bad


def rewrite_metrics(out_dir: str, records: list[dict]) -> None:
    with open(os.path.join(out_dir, METRICS), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


# ------------------------------------------------------------------------------------------------
# Where a run may write
# ------------------------------------------------------------------------------------------------


def writable_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be (made) a directory to write into, or None: a file there or above it,
    or an existing ancestor without write permission."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return "is a file, not a directory" if os.path.exists(path) else "is a broken symbolic link"
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"cannot be created: {probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot be written: no write permission in {probe}"
    return None


def check_new(out_dir: str, force: bool) -> list[str]:
    """Before a new run in ``out_dir``: the run files already there (deleted by ``clear`` when
    ``force``); refused without ``force``. Raises RunDirError with one line."""
    problem = writable_dir_problem(out_dir)
    if problem:
        raise RunDirError(f"--out {out_dir} {problem}")
    found = [n for n in RUN_FILES if os.path.lexists(os.path.join(out_dir, n))]
    events = [os.path.relpath(path, out_dir) for path in event_files(out_dir)]
    if (found or events) and not force:
        found += [f"{TENSORBOARD}/ event files"] if events else []
        if CHECKPOINT in found:
            advice = f"continue it with --resume {out_dir}, choose another --out, or replace it with --force"
        else:
            advice = "choose another --out, or replace them with --force"
        raise RunDirError(f"--out {out_dir} already holds a run ({', '.join(found)}): {advice}")
    for name in found:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            raise RunDirError(f"--out {out_dir}: {path} is a directory, not a file of a run: not replacing it")
    return found + events


def clear(out_dir: str, names: list[str]) -> None:
    """Delete a replaced run's files (links themselves, never their targets)."""
    for name in names:
        path = os.path.join(out_dir, name)
        if os.path.lexists(path):
            os.unlink(path)


@dataclasses.dataclass
class Resume:
    """What a resume found: the run's id, the metrics records to keep, warnings to give, and the
    event files of other runs, relative to the run directory (a forced resume deletes them)."""

    run_id: str
    records: list[dict]
    warnings: list[str]
    foreign_events: list[str] = dataclasses.field(default_factory=list)


def _owners(foreign: dict[str, set]) -> str:
    def runs(ids):
        return ", ".join(sorted(f"run {i}" if i else "a run without an id" for i in ids))

    parts = []
    if CONFIG in foreign:
        parts.append(f"{CONFIG} is of {runs(foreign[CONFIG])}")
    if METRICS in foreign:
        parts.append(f"{METRICS} has records of {runs(foreign[METRICS])}")
    if TENSORBOARD in foreign:
        parts.append(f"{TENSORBOARD}/ has event files of {runs(foreign[TENSORBOARD])}")
    return " and ".join(parts)


def check_resume(out_dir: str, payload: dict, cfg: dict, force: bool) -> Resume:
    """Before resuming ``payload`` (a loaded checkpoint) in ``out_dir`` with the options ``cfg``:
    the identity, config.yaml and metrics.jsonl checks of the module docstring."""
    run_id, step = payload.get(ID_KEY), payload["step"]
    if run_id is not None and not is_id(run_id):
        raise CheckpointError(f"{os.path.join(out_dir, CHECKPOINT)}: {ID_KEY} must be 32 hex digits, got {run_id!r}")
    warnings: list[str] = []
    foreign: dict[str, set] = {}  # what in out_dir belongs to another run than the checkpoint's
    config_path = os.path.join(out_dir, CONFIG)
    if os.path.isfile(config_path):
        config_id, intact, text = read_config_header(config_path)
        if config_id is not None and config_id != run_id:
            foreign[CONFIG] = {config_id}
        elif not intact and not force:
            edits = _config_edits(text, payload["config"], cfg)
            if edits:
                raise RunDirError(
                    f"{config_path} was edited after the run wrote it ({'; '.join(edits)}): a resumed run takes "
                    "its options from checkpoint.pt; give the change as --set, or resume with --force to "
                    "overwrite config.yaml with the run's options"
                )
    metrics_path = os.path.join(out_dir, METRICS)
    numbered, bad = read_metrics(metrics_path) if os.path.isfile(metrics_path) else ([], [])
    others = {r.get(ID_KEY) for _, r in numbered} - {run_id}
    if run_id is None:
        others.discard(None)  # records of the same earlier fastgp: no id either
    if others:
        foreign[METRICS] = others
    events = event_files(out_dir)
    foreign_events = {path: owner for path, owner in events.items() if owner != run_id}
    if foreign_events:
        foreign[TENSORBOARD] = set(foreign_events.values())
    if foreign and not force:
        ckpt = f"run {run_id}" if run_id else "a run without an id (an earlier fastgp)"
        raise RunDirError(
            f"--resume {out_dir}: {CHECKPOINT} is of {ckpt}, but {_owners(foreign)}: was the checkpoint copied "
            "from another run's directory? Resume with --force to continue the checkpoint's run there (the "
            "other run's records are dropped and config.yaml is rewritten)"
        )
    if run_id is None:
        run_id = new_id()
        warnings.append(f"{os.path.join(out_dir, CHECKPOINT)} has no run id (written by an earlier fastgp): "
                        f"nothing can check that the files beside it are of its run; it continues as run {run_id}")
        # The records of an earlier fastgp had no id: they are this run's from now on.
        numbered = [(n, {ID_KEY: run_id, **r}) if ID_KEY not in r else (n, r) for n, r in numbered]
    warnings += [f"{line}: dropped" for line in bad]
    # Records after the checkpoint's step are logged again by the resumed run.
    kept = [r for _, r in numbered if r.get(ID_KEY) == run_id and r["step"] <= step]
    return Resume(run_id, kept, warnings, [os.path.relpath(path, out_dir) for path in foreign_events])
