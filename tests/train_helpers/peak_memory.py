"""Peak-memory growth of streamed training, for tests/test_train.py (run in a child process).

    MALLOC_MMAP_THRESHOLD_=131072 python peak_memory.py CACHE_DIR FOLDER [FOLDER ...]

For each ImageFolder FOLDER (after a warm-up epoch on the first one) prints one JSON line
{"folder": ..., "streamed_kb": ..., "in_memory_kb": ...}: how much the peak resident memory of this
process (Linux VmHWM, reset before each measurement) rises above its resident memory while one
epoch of `robbook.train.train` streams the folder, and while `FolderDataset.load_all()` decodes it
into memory. The fixed glibc mmap threshold makes freed batch buffers go back to the system, so
that heap fragmentation does not pass for data held in memory.
"""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from robbook.data import load_folder  # noqa: E402
from robbook.train import TrainConfig, train  # noqa: E402


def growth(fn) -> int:
    Path("/proc/self/clear_refs").write_text("5")
    read = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))  # noqa: E731
    start = read("VmRSS:")
    fn()
    return read("VmHWM:") - start


cache, folders = Path(sys.argv[1]), sys.argv[2:]
cfg = TrainConfig(model="linear", num_classes=4, batch_size=32, lr=0.01, weight_decay=0.0)
run = lambda f, tag: train(cfg, load_folder(f), device="cpu", cache_dir=cache / tag, progress=False,  # noqa: E731
                           num_workers=0)
growth(lambda: run(folders[0], "warm-up"))
for i, f in enumerate(folders):
    streamed = growth(lambda: run(f, str(i)))
    held = []
    in_memory = growth(lambda: held.append(load_folder(f).load_all(num_workers=0, progress=False)))
    del held
    print(json.dumps({"folder": f, "streamed_kb": streamed, "in_memory_kb": in_memory}), flush=True)
