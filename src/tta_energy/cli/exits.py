"""The exit statuses of the ``tta-energy`` commands and of the device scripts, each in one place
(scripts/device_exits.sh copies those the device scripts test; a test keeps the copies equal). No two mean the
same number, so a script that passes a command's status on is never read as another."""

from __future__ import annotations

#: an unexpected failure (a bug or the environment), shown as one line unless --debug
FAILURE_EXIT = 1
#: every user error (usage, value, file, device, permission), as click uses for usage errors
USAGE_EXIT = 2
#: work left unfinished: a sweep's --time-budget-s left pairs undone, a campaign run left cells unfinished, a
#: levers run's model failed (run the same command again to finish)
INCOMPLETE_EXIT = 3
#: no generation of a sweep succeeded (every measured row is oom / nan_audio / error)
ALL_FAILED_EXIT = 4
#: a process that lost its CUDA context (a CUDA error after which nothing more runs in the process): the rows
#: before it are kept, and the same command run again measures the rest
CONTEXT_LOST_EXIT = 5
#: nothing was left to measure: ``campaign run`` found every cell done, ``levers run --plan`` every cell of
#: its plan; nothing was built or measured. The device scripts (scripts/gpu_call.sh, gpu_campaign.sh,
#: gpu_levers.sh) pass it on, and exit with it when no plan has work left for the card they run on
NOTHING_LEFT_EXIT = 6
#: stopped by SIGINT (Ctrl-C, or ``timeout -s INT`` at a device call's hard limit)
INTERRUPTED_EXIT = 130
