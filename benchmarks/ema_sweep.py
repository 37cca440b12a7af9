"""Paired test of weight averaging on one `cifar-speedrun` run (how ema_decay was chosen).

    python benchmarks/ema_sweep.py train RUN_DIR --data-dir DIR --seed 0 --extra 0.95,0.98
    python benchmarks/ema_sweep.py eval RUN_DIR

`train` runs the recipe exactly as `reslab train` does, with `--ema-decay` as the
evaluated average, and also keeps an average for each `--extra` decay (saved at the end
to RUN_DIR/extra_emas.pt). An average never feeds back into training, so all of them,
and the trained weights themselves (`train_model` in last.pt), come from one trajectory.
`eval` then scores each on the validation split with the recipe's test views (flip and
1-px shifts) and with the centre view alone: differences are paired, free of seed noise.
"""

from __future__ import annotations

import argparse

import torch

import reslab.training.loop as loop
from reslab.config import make_config
from reslab.evaluation import evaluate, run_data
from reslab.inference import load_model
from reslab.training.ema import WeightEMA


def train(args: argparse.Namespace) -> None:
    extras = [float(d) for d in args.extra.split(",")] if args.extra else []
    made: list[WeightEMA] = []

    class WithExtras(WeightEMA):
        def __init__(self, model: torch.nn.Module, decay: float) -> None:
            super().__init__(model, decay)
            self.others = [WeightEMA(model, d) for d in extras]
            made.append(self)

        def update(self) -> None:
            super().update()
            for other in self.others:
                other.update()

    loop.WeightEMA = WithExtras  # the loop builds its average through this name
    cfg = make_config(
        "cifar-speedrun",
        data_dir=args.data_dir,
        out=args.run,
        seed=args.seed,
        ema_decay=args.ema_decay,
        progress=False,
    )
    result = loop.train(cfg)
    saved = {d: other.model.state_dict() for d, other in zip(extras, made[0].others)}
    torch.save(saved, f"{args.run}/extra_emas.pt")
    print(result.summary["final_eval"])


def score(args: argparse.Namespace) -> None:
    loaded = load_model(args.run)
    cfg = loaded.config
    data = run_data(cfg, loaded.image_size, cfg["dataset"], cfg["data_dir"], 500, "cpu", "val")
    last = torch.load(f"{args.run}/checkpoints/last.pt", weights_only=True)
    weights = {"trained": last["train_model"], f"ema {cfg['ema_decay']}": last["model"]}
    try:
        extra = torch.load(f"{args.run}/extra_emas.pt", weights_only=True)
        weights.update({f"ema {d}": sd for d, sd in extra.items()})
    except FileNotFoundError:
        pass
    model = loaded.model.to(memory_format=torch.channels_last)
    views = data.eval_loader("val", "center")
    for name, state in weights.items():
        model.load_state_dict(state)
        tta = evaluate(model, views.epoch(0), flip=True, shift=1)
        centre = evaluate(model, views.epoch(0))
        print(
            f"{name}: flip+shift1 {100 - tta['top1_error']:.2f}%  "
            f"centre {100 - centre['top1_error']:.2f}%",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("run")
    t.add_argument("--data-dir", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ema-decay", type=float, default=0.99)
    t.add_argument("--extra", default="0.95,0.98,0.995,0.998", help="more decays, comma-separated")
    t.set_defaults(func=train)
    e = sub.add_parser("eval")
    e.add_argument("run")
    e.set_defaults(func=score)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
