"""Test hooks into robbook.train for the child processes of the training tests."""
import sys


def patch_train(name: str, value) -> None:
    """Set `name` to `value` in every loaded module of the package robbook.train that has it: each module looks up
    what it imported in its own namespace, so a hook must replace the name in all of them."""
    for n, mod in list(sys.modules.items()):
        if (n == "robbook.train" or n.startswith("robbook.train.")) and hasattr(mod, name):
            setattr(mod, name, value)
