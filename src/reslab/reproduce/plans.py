"""The paper's experiments as data: each experiment's runs, and the budgets (steps, batch,
image size, seeds) they are trained at. experiments.py runs them.

A budget is a small override of a recipe (STYLE.md: recipes as small overrides): the
`cpu` budgets fit 2 CPU cores, `gpu` ones a lent GPU, `paper` is the paper's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How much of the paper's schedule to run. `scale` shrinks every step count."""

    scale: float
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: int = 1
    note: str = ""


# Budgets per experiment family ("cifar" runs the cifar-paper recipe, "imagenet" the
# imagenet-paper one at reduced resolution on CPU).
BUDGETS: dict[str, dict[str, Budget]] = {
    "cifar": {
        "smoke": Budget(
            1 / 16_000,
            {
                "limit": 192,
                "val_size": 64,
                "batch_size": 32,
                "eval_batch_size": 64,
                "log_every": 1,
                "eval_every": 2,
                "checkpoint_every": 4,
            },
            note="4 steps on tiny data: for tests",
        ),
        # Both halves of Figure 6 on a laptop: plain nets get worse with depth, residual
        # nets better. 2,000 steps of batch 128 (5.7 epochs of 45k), 2 seeds. Departure
        # from the paper, for a budget 32x shorter: the lr (0.1, batch 128, as the paper)
        # warms up linearly over the first 200 steps and then decays linearly to 0
        # ("budgeted training", Li et al. 2020) instead of /10 at 50% and 75%. Without
        # the warm-up the 56-layer nets spend ~100 of the steps at chance
        # (docs/results/README.md, "Why deep ResNets started slowly").
        "cpu": Budget(
            1.0,
            {
                "iterations": 2_000,
                "milestones": (),
                "schedule": "onecycle",
                "warmup_iters": 200,
                "log_every": 25,
                "eval_every": 200,
                "checkpoint_every": 200,
            },
            seeds=2,
            note="2,000 steps (1/32 of the paper's 64k), lr warm-up over 200 steps then "
            "linear decay to 0, 2 seeds",
        ),
        # The first CPU budget, kept because it is quick and shows the degradation of
        # plain nets at all four depths: 1000 steps (2.8 epochs), lr /10 at 500 and 750,
        # 8 networks in ~52 minutes. Too short (and without a warm-up) for the deeper
        # residual nets to overtake the shallower ones.
        "cpu-plain-degradation": Budget(
            1 / 64,
            {"log_every": 25 * 64, "eval_every": 125 * 64, "checkpoint_every": 125 * 64},
            note="1,000 of the paper's 64k iterations (1/64), milestones 500/750: shows "
            "plain nets degrading, not yet deeper residual nets winning",
        ),
        "paper": Budget(1.0, {}, seeds=1, note="the paper's full 64k-iteration schedule"),
        # The paper's schedule on one GPU, as cifar10-paper:resnet20/32 were trained
        # (docs/results/table6-paper): 64k steps of batch 128, lr 0.1 /10 at 32k and 48k,
        # ResNet-110's lr-0.01 warm-up, seed 0. Departures, for speed only: bf16 autocast
        # and CUDA graphs (both learn as fp32 eager does: docs/benchmarks.md). Estimated,
        # from ResNet-32's measured 3.6 min alone on an H200 scaled by depth (ResNet-44's
        # partial chunk ran at that rate): ~5, 6.3 and 12.4 min for ResNet-44/56/110.
        "gpu": Budget(
            1.0,
            {"amp": "bf16", "cuda_graphs": True},
            note="the paper's 64k iterations of batch 128 (lr 0.1, /10 at 32k and 48k; "
            "ResNet-110 warmed up at 0.01), bf16 autocast and CUDA graphs on one GPU, seed 0",
        ),
    },
    "imagenet": {
        "smoke": Budget(
            1 / 150_000,
            {
                "limit": 96,
                "val_size": 32,
                "batch_size": 16,
                "eval_batch_size": 16,
                "image_size": 64,
                "log_every": 1,
                "eval_every": 2,
                "checkpoint_every": 4,
                "iterations": 600_000,
            },
            note="4 steps on tiny data: for tests",
        ),
        # Figure 4's findings (and Table 3's options on the same net) in one session: 4 nets x
        # 2 seeds. Timed on 2 quiet Zen 4 cores (2026-12-03, seed 1): plain-18 7.8, ResNet-18
        # 7.5, plain-34 14.0, ResNet-34 14.3 min, evaluations and 10-crop included: ~1 h 27 min
        # for both seeds. Departures, for a budget ~250x shorter than the paper's (64k images,
        # 7.5 epochs of Imagenette):
        # - 64 px crops, the paper's scale augmentation scaled with them (shorter side in
        #   [73, 137] where the paper has [256, 480] for 224; the 7x7 stem and max-pool are
        #   kept, so the last stage works at 2x2);
        # - batch 64 at lr 0.025: the paper's 0.1 per 256 images, linearly scaled (at 0.1 the
        #   residual nets sat at chance: docs/results/README.md);
        # - the rate warms up over 50 steps and decays linearly to 0 (as the CIFAR cpu budget)
        #   instead of /10 on plateaus, which a 1,000-step run never reaches;
        # - 1,000 held-out images as validation, scored every 100 steps, in 10 crops at the end.
        "cpu": Budget(
            1.0,
            {
                "iterations": 1_000,
                "image_size": 64,
                "batch_size": 64,
                "val_size": 1000,
                "schedule": "onecycle",
                "milestones": (),
                "warmup_iters": 50,
                "log_every": 10,
                "eval_every": 100,
                "checkpoint_every": 100,
            },
            seeds=2,
            note="1,000 steps of batch 64 at 64 px (7.5 epochs of Imagenette), lr 0.025 "
            "(0.1 per 256 images) warmed up over 50 steps then decayed linearly to 0, 2 seeds",
        ),
        "paper": Budget(1.0, {}, note="the paper's schedule: batch 256, 224 px, up to 60e4 steps"),
        # Figure 4, Table 2 and Table 3 at a budget that can tell (issue 36): the paper's batch
        # and rate on one GPU, ~41 epochs of Imagenette, 2 seeds. Departures from section 3.4:
        # - 128 px crops (the scale augmentation scaled with them: shorter side in [146, 274]);
        # - 1,200 steps of batch 256 (41 epochs of 7,469 images, the paper's ~120 of 1.28M),
        #   lr 0.1 divided by 10 at fixed steps, 600 and 900 (50% and 75%, as the paper's
        #   CIFAR schedule), not on plateaus: a plateau needs evaluations a short run lacks;
        # - 2,000 of the 9,469 training images held out as validation (a tree with its own
        #   val/ folder is scored on that instead), every 100 steps, in 10 crops at the end;
        # - bf16 autocast. The decoded training split is held on the GPU (decoded_loader.py).
        # Time, an estimate (no GPU has run it yet): 3 x 2 x 0.59 / 1.19 GMAC x 307,200 images
        # = 1.08 / 2.19 PFLOP a run for 18 / 34 layers; at ResNet-32's measured 16.4 TFLOP/s
        # on an H200 (39,600 images/s, docs/results/table6-paper), a floor for these wider
        # convs, ~1.1 / 2.2 min a run alone: Figure 4's 8 runs <= ~15 min, Table 3's B and C
        # (4 runs) <= ~10 min, evaluations included.
        "gpu": Budget(
            1.0,
            {
                "iterations": 1_200,
                "schedule": "step",
                "milestones": (600, 900),
                "image_size": 128,
                "batch_size": 256,
                "val_size": 2000,
                "amp": "bf16",
                "log_every": 10,
                "eval_every": 100,
                "checkpoint_every": 100,
            },
            seeds=2,
            note="1,200 steps of batch 256 at 128 px (41 epochs of Imagenette's 7,469 "
            "training images; the paper ~120 of ImageNet at 224 px), lr 0.1 /10 at 600 and "
            "900 (fixed steps, not plateaus), 2,000 held-out images, bf16, 2 seeds",
        ),
    },
}


@dataclass(frozen=True)
class Experiment:
    name: str
    family: str  # which BUDGETS table
    recipe: str
    dataset: str
    runs: tuple[tuple[str, str | None], ...]  # (model, shortcut override)
    figure: str  # what the paper shows: for the report
    extra_paper_runs: tuple[tuple[str, str | None], ...] = ()  # only at the paper budget
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # budget -> overrides
    # budget -> the runs it trains instead of `runs` (a CPU budget affords fewer depths)
    budget_runs: dict[str, tuple[tuple[str, str | None], ...]] = field(default_factory=dict)
    # The final network's validation error in these views besides the centre crop, once a
    # run has finished (runs/NAME/views.json): Table 2 and 3 give 10-crop errors.
    views: tuple[str, ...] = ()
    # budget -> {model: seeds}: runs too long for every seed of the budget (the 110-layer
    # nets take ~50 minutes each on 2 CPU cores) train only their first seeds.
    seed_caps: dict[str, dict[str, int]] = field(default_factory=dict)

    def planned(self, budget: str) -> list[tuple[str, str | None]]:
        runs = list(self.budget_runs.get(budget, self.runs))
        return runs + (list(self.extra_paper_runs) if budget == "paper" else [])

    def plan(self, budget: str, seeds: int) -> list[tuple[str, str | None, int]]:
        """(model, shortcut, seed) in training order: every run of seed 0 first."""
        caps = self.seed_caps.get(budget, {})
        return [
            (m, sc, seed)
            for seed in range(seeds)
            for m, sc in self.planned(budget)
            if seed < caps.get(m, seeds)
        ]


EXPERIMENTS: dict[str, Experiment] = {
    "degradation": Experiment(
        "degradation",
        "cifar",
        "cifar-paper",
        "cifar10",
        tuple((f"{kind}{d}", None) for kind in ("plain", "resnet") for d in (20, 32, 44, 56)),
        "Figure 6 / Table 6",
        extra_paper_runs=(("plain110", None), ("resnet110", None)),
        # The shallowest and deepest of Table 6 and ResNet-110 (with the paper's lr-0.01
        # warm-up) with 2 seeds fit the CPU budget; plain-110, which fails at chance, once.
        budget_runs={
            "cpu": (
                *((f"{kind}{d}", None) for kind in ("plain", "resnet") for d in (20, 56)),
                ("resnet110", None),
                ("plain110", None),
            ),
            # Table 6's remainder at the paper's schedule (ResNet-20/32 ran as
            # docs/results/table6-paper), then Figure 6's plain nets at 20 and 56.
            "gpu": (
                ("resnet44", None),
                ("resnet56", None),
                ("resnet110", None),
                ("plain20", None),
                ("plain56", None),
            ),
        },
        seed_caps={"cpu": {"plain110": 1}},
    ),
    # Figure 4 and Table 2 use option A for the residual nets (section 4.1: "identity
    # mapping for all shortcuts and zero-padding for increasing dimensions").
    "imagenet-degradation": Experiment(
        "imagenet-degradation",
        "imagenet",
        "imagenet-paper",
        "imagefolder",
        (("plain18", None), ("plain34", None), ("resnet18", "A"), ("resnet34", "A")),
        "Figure 4 / Table 2",
        views=("ten-crop",),
        # The residual nets first: Table 3 reuses ResNet-34 (A), and a GPU lease may end.
        budget_runs={
            "gpu": (("resnet18", "A"), ("resnet34", "A"), ("plain18", None), ("plain34", None))
        },
    ),
    # Table 3 on the paper's own network: ImageNet ResNet-34, at the same budget as Figure 4.
    "shortcuts": Experiment(
        "shortcuts",
        "imagenet",
        "imagenet-paper",
        "imagefolder",
        (("resnet34", "A"), ("resnet34", "B"), ("resnet34", "C")),
        "Table 3 (options A/B/C, ResNet-34 on Imagenette)",
        views=("ten-crop",),
    ),
    "shortcuts-cifar": Experiment(
        "shortcuts-cifar",
        "cifar",
        "cifar-paper",
        "cifar10",
        (("resnet32", "A"), ("resnet32", "B"), ("resnet32", "C")),
        "Table 3 (options A/B/C; a 32-layer CIFAR net here, ResNet-34 in the paper)",
        views=("ten-crop",),
    ),
    "very-deep": Experiment(
        "very-deep",
        "cifar",
        "cifar-paper",
        "cifar10",
        (("resnet1202", None),),
        "Section 4.2 (1202 layers)",
        # Activation checkpointing: recompute each block in backward, so memory grows with
        # the square root of depth, not depth. One ResNet-1202 step at batch 128 costs
        # ~17 GFLOP per image on a CPU: the cpu budget shows feasibility, not accuracy.
        settings={
            "smoke": {
                "batch_size": 8,
                "limit": 48,
                "val_size": 16,
                "eval_batch_size": 16,
                "model_args": {"grad_checkpointing": True},
                "eval_every": 10**9,
            },
            "cpu": {
                "scale": 1.0,
                "iterations": 60,
                "milestones": (),
                "val_size": 1000,
                "schedule": "step",
                "warmup_iters": 0,
                "seeds": 1,
                "eval_every": 60,
                "log_every": 5,
                "checkpoint_every": 20,
                "model_args": {"grad_checkpointing": True},
                "note": "60 steps of batch 128 at lr 0.01 (the paper's 110-layer warm-up), "
                "activation checkpointing, 1 seed: cost and stability, not accuracy",
            },
            "paper": {"model_args": {"grad_checkpointing": True}},
            # CUDA graphs are not known to capture activation checkpointing: eager here.
            "gpu": {"model_args": {"grad_checkpointing": True}, "cuda_graphs": False},
        },
    ),
}
# "responses" (Figure 7) reads the degradation runs' checkpoints: see responses.py.


MAX_SEEDS = 100


def run_name(model: str, shortcut: str | None, seed: int) -> str:
    return f"{model}{'-' + shortcut if shortcut else ''}-s{seed}"
