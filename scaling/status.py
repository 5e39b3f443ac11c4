"""How a run ends: its status in `summary.json` and results.csv, and the exit code of
`scaling-train` (and of `scaling-sweep`, which passes preemption and interruption on).

    completed 0 · failed 1 · bad configuration 2 · diverged 3 · preempted 75 (checkpoint saved:
    rerun the same command to resume; 75 is EX_TEMPFAIL, which schedulers read as "try again") ·
    interrupted 130 (Ctrl-C: checkpoint saved, rerun to resume; 128 + SIGINT, as shells report it)
"""

COMPLETED, FAILED, DIVERGED, PREEMPTED = "completed", "failed", "diverged", "preempted"
INTERRUPTED = "interrupted"  # stopped by Ctrl-C (SIGINT) after saving a checkpoint
PENDING = "pending"  # planned by a sweep, not started (results.csv only)

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75
EXIT_INTERRUPTED = 130

EXIT_CODES = {COMPLETED: EXIT_COMPLETED, FAILED: EXIT_FAILED, DIVERGED: EXIT_DIVERGED,
              PREEMPTED: EXIT_PREEMPTED, INTERRUPTED: EXIT_INTERRUPTED}
# A run that ended with one of these is final (a sweep does not train it again).
FINAL = (COMPLETED, DIVERGED)
# Stopped on request with a checkpoint saved: the same command resumes.
RESUMABLE = (PREEMPTED, INTERRUPTED)
# Exit codes after which the run's own summary.json says how it ended.
SELF_REPORTED_EXITS = (EXIT_COMPLETED, EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_INTERRUPTED)
