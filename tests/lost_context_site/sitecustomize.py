"""Started by Python in a test's child process (this folder on PYTHONPATH): installs the lost-context fault of
``tests/lost_context.py`` for the spec named by ``TTA_ENERGY_TEST_LOSE_CONTEXT`` (once, with
``TTA_ENERGY_TEST_LOSE_CONTEXT_ONCE``)."""

import os

if os.environ.get("TTA_ENERGY_TEST_LOSE_CONTEXT"):
    from pathlib import Path

    from lost_context import install

    once = os.environ.get("TTA_ENERGY_TEST_LOSE_CONTEXT_ONCE")
    install(os.environ["TTA_ENERGY_TEST_LOSE_CONTEXT"], Path(once) if once else None)
