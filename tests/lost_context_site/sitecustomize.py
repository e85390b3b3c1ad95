"""Started by Python in a test's child process (this folder on PYTHONPATH): installs the lost-context fault of
``tests/lost_context.py`` for the spec named by ``TTA_ENERGY_TEST_LOSE_CONTEXT``."""

import os

if os.environ.get("TTA_ENERGY_TEST_LOSE_CONTEXT"):
    from lost_context import install

    install(os.environ["TTA_ENERGY_TEST_LOSE_CONTEXT"])
