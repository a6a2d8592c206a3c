"""Run `robbook.train.train` on the easy task in a child process (for the kill/resume and DDP tests).

    python run_train.py CACHE_DIR OUT_DIR CONFIG_JSON [--exit-after K] [--sleep S] [--num-images N] [--val M]
                        [--eval-attack JSON] [--folder DIR] [--num-workers W]

Writes OUT_DIR/rank{RANK}.json with the history, a digest and the flat weights of the model,
`epochs_run`, `from_cache` and the number of files this process wrote. `--exit-after K` makes
the process `os._exit(17)` right after writing the checkpoint of epoch K (a crash); `--sleep S`
sleeps S seconds per batch (to give a SIGKILL time to land mid-epoch); `--code-version V` uses V
as `robbook.train.code_version()` (the test process's, so that cache keys agree); `--val M`
validates on `easy_data(M, 1)` with `--eval-attack` (a JSON dict); `--folder DIR` streams the
training data from the ImageFolder DIR (grey images) instead of `easy_data(N, 0)`.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

torch.set_num_threads(1)

import robbook.train as T  # noqa: E402
import robbook.train.objectives as TO  # noqa: E402
import robbook.train.store as TS  # noqa: E402
from train_helpers.easy import easy_data, weights_digest  # noqa: E402
from train_helpers.hooks import patch_train  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("cache")
p.add_argument("out")
p.add_argument("config")
p.add_argument("--exit-after", type=int, default=None)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--num-images", dest="n", type=int, default=256)
p.add_argument("--code-version", default=None)
p.add_argument("--val", type=int, default=0)
p.add_argument("--eval-attack", default=None)
p.add_argument("--folder", default=None)
p.add_argument("--num-workers", type=int, default=0)
a = p.parse_args()
if a.code_version:     # the parent's: keys stay comparable even if a source file changes meanwhile
    patch_train("code_version", lambda: a.code_version)
rank = int(os.environ.get("RANK", "0"))
writes = []

orig_ckpt, orig_write, orig_append = TS._write_checkpoint, TS._atomic_write, TS._append_history


def write_checkpoint(path, payload):
    orig_ckpt(path, payload)
    if a.exit_after is not None and payload["epoch"] == a.exit_after:
        os._exit(17)


def atomic_write(path, data):
    writes.append(str(path))
    orig_write(path, data)


def append_history(path, entry):
    writes.append(str(path) + "/history.jsonl")
    orig_append(path, entry)


for name, hook in [("_write_checkpoint", write_checkpoint), ("_atomic_write", atomic_write),
                   ("_append_history", append_history)]:
    patch_train(name, hook)
if a.sleep:
    orig_obj = TO._objective

    def slow_objective(*args, **kw):
        time.sleep(a.sleep)
        return orig_obj(*args, **kw)
    patch_train("_objective", slow_objective)

cfg = T.TrainConfig.from_dict(json.loads(a.config))
if a.folder:
    from robbook.data import load_folder
    data = load_folder(a.folder, mode="L")
else:
    data = easy_data(a.n, 0)
kw = {}
if a.val:
    kw = dict(val_data=easy_data(a.val, 1), eval_attack=json.loads(a.eval_attack) if a.eval_attack else None)
res = T.train(cfg, data, device="cpu", cache_dir=a.cache, progress=False, num_workers=a.num_workers, **kw)
out = {"history": res.history, "digest": weights_digest(res.model), "epochs_run": res.epochs_run,
       "from_cache": res.from_cache, "writes": len(writes), "key": res.key,
       "weights": torch.cat([v.flatten().double() for _, v in sorted(res.model.state_dict().items())]).tolist()}
Path(a.out).mkdir(parents=True, exist_ok=True)
(Path(a.out) / f"rank{rank}.json").write_text(json.dumps(out))
