"""`python -m robbook` for the launch tests, with three test hooks read from the environment.

    torchrun ... -m train_helpers.launch_entry train JOB.json ...

ROBBOOK_TEST_CODE_VERSION: use it as robbook.train.code_version() (the test process's, so that
keys agree even if a source file changes meanwhile); ROBBOOK_TEST_SLEEP: seconds to sleep per
training batch (time for a kill to land mid-run); ROBBOOK_TEST_FAIL_RANK: this rank raises an
error before training.
"""
import os
import sys
import time

import robbook.train.objectives as TO
from robbook.run import main
from train_helpers.hooks import patch_train

if os.environ.get("ROBBOOK_TEST_CODE_VERSION"):
    patch_train("code_version", lambda: os.environ["ROBBOOK_TEST_CODE_VERSION"])
if float(os.environ.get("ROBBOOK_TEST_SLEEP", "0")):
    _objective = TO._objective

    def slow_objective(*args, **kw):
        time.sleep(float(os.environ["ROBBOOK_TEST_SLEEP"]))
        return _objective(*args, **kw)
    patch_train("_objective", slow_objective)
if os.environ.get("ROBBOOK_TEST_FAIL_RANK") == os.environ.get("RANK"):
    raise RuntimeError(f"rank {os.environ['RANK']} fails on purpose (a test of the error report)")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
