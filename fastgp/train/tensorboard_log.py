"""TensorBoard event files of a run (``log.tensorboard``; the optional [tensorboard] extra).

Beside metrics.jsonl, never instead of it: every number of each metrics record under the same
name (the diagnostics among them), at the record's step, and the sample picture whenever the
trainer draws one (``samples``, the figure of samples.png). Written by rank 0 only, into
``<run dir>/tensorboard/``; each event file's name ends with the run id (see rundir).

A resumed run appends to the same folder. The interrupted run may have logged records after its
last checkpoint, which the resumed run logs again (metrics.jsonl drops them on resume); the writer
opens with ``purge_step`` = the checkpoint's step + 1, and TensorBoard hides every earlier event at
or after that step, so each step is shown once.
"""

from __future__ import annotations

import os

from .._extras import missing
from .rundir import ID_KEY, TENSORBOARD

EXTRA = "tensorboard"


def problem() -> str | None:
    """One line when the event files cannot be written (tensorboard is not installed), else None."""
    return missing("tensorboard", EXTRA, "the TensorBoard event files (log.tensorboard)")


class EventLog:
    def __init__(self, out_dir: str, run_id: str, resumed_at: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(
            os.path.join(out_dir, TENSORBOARD),
            purge_step=None if resumed_at is None else resumed_at + 1,
            filename_suffix="." + run_id,
        )

    def record(self, rec: dict) -> None:
        step = rec["step"]
        for key, value in rec.items():
            if key not in ("step", ID_KEY) and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        # On disk with each record, as metrics.jsonl: a killed run's events up to its checkpoint stay.
        self.writer.flush()

    def figure(self, tag: str, fig, step: int) -> None:
        self.writer.add_figure(tag, fig, step, close=False)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
