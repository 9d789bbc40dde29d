"""Train a small model of any family for a few steps, in one process or under torchrun; rank 0 saves the result.

    python tests/distributed_train.py --model dcgan --data d.pt --out one.pt
    torchrun --standalone --nproc-per-node 2 tests/distributed_train.py --model dcgan --data d.pt --out two.pt

Used by tests/test_distributed.py to compare a 2-process gloo run with one process at the same global batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ganmodels  # noqa: E402
from ganmodels.data.base import PreparedDataset  # noqa: E402
from ganmodels.train import Callback, TrainConfig, Trainer, seed_everything  # noqa: E402
from ganmodels.train.distributed import init_from_env  # noqa: E402
from model_configs import SMALL  # noqa: E402


class StopAt(Callback):
    """What a collapse monitor or a signal does: ask the trainer to stop after this step, on one process."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, logs):
        if step == self.step:
            trainer.request_stop(f"asked at step {step}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--train", default="{}", help="TrainConfig overrides, JSON")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--until", type=int, default=None, help="stop after this many steps (of --steps)")
    parser.add_argument("--stop-at", type=int, default=None, help="a callback on --stop-rank requests a stop here")
    parser.add_argument("--stop-rank", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    process = init_from_env("cpu")
    data = PreparedDataset.load(args.data)
    seed_everything(0)
    model = ganmodels.build(args.model, SMALL[args.model])
    cfg = TrainConfig(**{"steps": args.steps, "batch_size": 8, "seed": 0, "device": "cpu", "ema_beta": 0.9,
                         **json.loads(args.train)})
    callbacks = [StopAt(args.stop_at)] if args.stop_at is not None and process.rank == args.stop_rank else []
    trainer = Trainer(model, data, cfg, workdir=args.workdir, callbacks=callbacks)
    result = trainer.fit(args.until, resume=args.resume)
    if process.main:
        torch.save({"world": process.world, "steps": result.steps, "stop_reason": result.stop_reason, "logs": result.logs,
                    "networks": {k: v.state_dict() for k, v in trainer.networks.items()},
                    "ema": {k: v.state_dict() for k, v in trainer.ema.items()},
                    "family_state": model.family_state(), "rng": trainer.gen.get_state()}, args.out)
    if process.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
