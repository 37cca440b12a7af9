"""The recipes: named overrides of TrainConfig's defaults, each a few fields. Each says
where it departs from the paper; a recipe is data, applied by config.make_config."""

from __future__ import annotations

from typing import Any

# Recipes: named overrides. Each says where it departs from the paper.
RECIPES: dict[str, dict[str, Any]] = {
    # Section 4.2: the defaults above are this recipe.
    "cifar-paper": {},
    # Section 3.4: batch 256, lr 0.1 divided by 10 when the error plateaus, up to 60e4 steps.
    "imagenet-paper": {
        "dataset": "imagefolder",
        "batch_size": 256,
        "lr_base_batch": 256,
        "schedule": "plateau",
        "iterations": 600_000,
        "milestones": (),
        "val_size": 10_000,
        "eval_every": 5000,
        "checkpoint_every": 2500,
        "eval_batch_size": 100,
    },
    # Beyond the paper: one-cycle-like cosine with linear warm-up, label smoothing,
    # Nesterov momentum, no weight decay on BN and biases; 20 epochs of 45k images
    # (~22 minutes for ResNet-20 on 2 CPU cores, see docs/benchmarks.md).
    "cifar-fast": {
        "schedule": "cosine",
        "iterations": 7_000,
        "milestones": (),
        "warmup_iters": 350,
        "lr_base": 0.2,
        "weight_decay": 5e-4,
        "decay_norm_and_bias": False,
        "nesterov": True,
        "label_smoothing": 0.1,
        "normalize": "channel",
        "eval_every": 700,
    },
    # Beyond the paper, and beyond its networks: the fastest way found to 90% on a CPU
    # (seeds 0-3: 90.26-90.42% validation accuracy, docs/benchmarks.md).
    # A wide, shallow residual net (models/fast.py) with the DAWNBench/airbench recipe:
    # batch 512, linear warm-up then linear decay to 0 ("onecycle"), Nesterov, label
    # smoothing 0.2, 2-px translations, alternating flips, a moving average of the
    # weights, evaluation with mirrored and 1-px shifted images too. 27.6 epochs of 45k
    # images, 19.3-25.2 minutes on 2 CPU cores (the machine's speed drifts); the search
    # is in docs/benchmarks.md.
    "cifar-speedrun": {
        "model": "fastresnet",
        "batch_size": 512,
        "lr_base_batch": 512,
        "schedule": "onecycle",
        "iterations": 2_400,
        "milestones": (),
        "warmup_iters": 480,
        "lr_base": 0.8,
        "weight_decay": 5e-4,
        "decay_norm_and_bias": False,
        "nesterov": True,
        "label_smoothing": 0.2,
        "ema_decay": 0.99,
        "normalize": "channel",
        "crop_pad": 2,
        "alternate_flip": True,
        "eval_flip": True,
        "eval_shift": 1,
        "eval_every": 800,
        "log_every": 30,
        "checkpoint_every": 100,
    },
}
