"""``--minutes M``: a run that ends on time, its cosine schedule complete.

A learning-rate schedule needs the total number of steps before it starts to decay, but the
speed of a step is only known once steps run (the device, the model, compilation and whatever
shares the machine all change it). So a timed run starts with an open schedule (the linear
warm-up of ``--warmup-steps``), times its first steps, then fixes the total: the steps that
fit in what is left of the budget, after the kNN evaluations and checkpoints those steps will
trigger (each timed once when the total is fixed) and the final ones. A run that falls
behind anyway (the machine got busier) ends early rather than late: its card says where.

    >>> budget = TimeBudget(minutes=20)
    >>> # after each step: if budget.timed(): total = budget.total_steps(step, ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: The schedule's length while the first steps are timed: so long that only its warm-up shows.
OPEN_STEPS = 10**9


@dataclass
class TimeBudget:
    """Times the first steps of a run that must end ``minutes`` after it was made.

    ``skip`` steps are not timed (allocation, cuDNN's algorithm search and compilation make
    them slow); then at least ``min_steps`` steps and ``fraction`` of the budget (at most
    ``max_seconds``) are timed.
    """

    minutes: float
    skip: int = 2
    min_steps: int = 5
    fraction: float = 0.05
    max_seconds: float = 30.0
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"a time budget needs minutes > 0, got {self.minutes}")
        self._seen = 0
        self._timed = 0
        self._clock: float | None = self.start if self.skip == 0 else None
        self.step_seconds = 0.0

    @property
    def seconds(self) -> float:
        return 60.0 * self.minutes

    def left(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return self.seconds - (time.perf_counter() - self.start)

    def timed(self) -> bool:
        """Record one finished step; True once enough steps are timed to fix the total."""
        now = time.perf_counter()
        self._seen += 1
        if self._clock is None:
            if self._seen >= self.skip:
                self._clock = now
            return False
        self._timed += 1
        elapsed = now - self._clock
        self.step_seconds = elapsed / self._timed
        return (self._timed >= self.min_steps
                and elapsed >= min(self.fraction * self.seconds, self.max_seconds))

    def overdue(self) -> bool:
        """True once the run is past its budget by more than 5% of it (at least 2 s, at most
        30 s): steps got slower after the total was fixed (a machine shared with other work),
        and the run should end now rather than late."""
        return self.left() < -min(max(0.05 * self.seconds, 2.0), 30.0)

    @property
    def timed_steps(self) -> int:
        return self._timed

    def total_steps(self, step: int, *, eval_seconds: float = 0.0, eval_every: int = 0,
                    save_seconds: float = 0.0, save_every: int = 0) -> int:
        """The run's total steps, ``step`` being done: the steps that fit in what is left,
        each costing its measured time plus its share of the evaluations (every
        ``eval_every`` steps, 0: never) and checkpoints it triggers, and keeping time for the
        final evaluation and checkpoint. At least one more step."""
        if self.step_seconds <= 0:
            raise RuntimeError("total_steps before any step was timed: call timed() after "
                               "each step until it says True")
        per_step = self.step_seconds
        per_step += eval_seconds / eval_every if eval_every else 0.0
        per_step += save_seconds / save_every if save_every else 0.0
        more = int((self.left() - eval_seconds - save_seconds) // per_step)
        return step + max(1, more)
