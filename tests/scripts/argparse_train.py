"""A plain argparse training script for the tests (standard library only, so it starts fast).

The loss falls each epoch, lowest near learning_rate 0.1. Knobs for the tests: ``--sleep`` per
epoch, ``--pid_dir`` (writes ``<pid>.pid`` holding ``<learning_rate> <first epoch>``),
``--fail_above_lr`` (exits 1 with a message), ``--nan_at`` (reports a NaN train_loss from that
epoch), ``--protocol line`` (prints STEPSIZE_REPORT lines instead of importing the API).
"""

import argparse
import json
import math
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, required=True)
parser.add_argument("--batch_size", type=int, default=32)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--pid_dir", default=None)
parser.add_argument("--fail_above_lr", type=float, default=None)
parser.add_argument("--nan_at", type=int, default=None)
parser.add_argument("--exit_code_at", type=int, nargs=2, default=None, metavar=("EPOCH", "CODE"))
parser.add_argument("--protocol", choices=["api", "line", "none"], default="api")
args = parser.parse_args()

if args.protocol == "api":
    from orchestrator.integrations.script import checkpoint_dir, report, resume_dir, start_epoch
else:
    def report(epoch, **metrics):
        if args.protocol == "line":
            print("STEPSIZE_REPORT " + json.dumps({"epoch": epoch, **metrics}), flush=True)

    def checkpoint_dir():
        return os.environ.get("STEPSIZE_CHECKPOINT_DIR", ".")

    def resume_dir():
        return os.environ.get("STEPSIZE_RESUME_DIR")

    def start_epoch():
        return int(os.environ.get("STEPSIZE_START_EPOCH", "0"))

first = 1
if resume_dir():
    with open(os.path.join(resume_dir(), "progress.json")) as file:
        first = json.load(file)["epoch"] + 1
    assert first == start_epoch() + 1, (first, start_epoch())
if args.pid_dir:
    with open(os.path.join(args.pid_dir, f"{os.getpid()}.pid"), "w") as file:
        file.write(f"{args.learning_rate} {first}\n")
if args.fail_above_lr is not None and args.learning_rate > args.fail_above_lr:
    print(f"epoch {first}: starting", flush=True)
    sys.exit(f"learning rate {args.learning_rate} is above {args.fail_above_lr}: refusing to train")

gap = (math.log10(args.learning_rate) + 1) ** 2
for epoch in range(first, args.epochs + 1):
    time.sleep(args.sleep)
    if args.exit_code_at and epoch == args.exit_code_at[0]:
        print(f"giving up in epoch {epoch}", file=sys.stderr, flush=True)
        sys.exit(args.exit_code_at[1])
    train_loss = float("nan") if args.nan_at is not None and epoch >= args.nan_at else 1.0 / epoch
    with open(os.path.join(checkpoint_dir(), "progress.json"), "w") as file:
        json.dump({"epoch": epoch}, file)
    report(epoch=epoch, train_loss=train_loss, val_loss=gap + 1.0 / epoch, batch_size=float(args.batch_size))
