"""Case 6 of benchmarks/run.py: int8 inference beside fp32, PyTorch and ONNX Runtime.

    python benchmarks/run.py --cases int8 [--out FILE]

Variants, each in its own process, timed in interleaved rounds by run.py's
`inference_rounds`: eager fp32, reslab fp32 (`optimize_for_inference`, oneDNN Graph),
reslab int8 (`reslab.quantize`: PT2E + inductor int8 kernels), ONNX Runtime fp32 on
reslab's export, and ONNX Runtime int8 (`export(..., "onnx", int8=True)`: its
quantize_static, QDQ, per-channel int8 weights, uint8 activations). Both int8 variants
are calibrated on the same 32 seeded random images: the networks have random weights
too, and speed does not depend on what the ranges are.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from reslab.provenance import cpu

VARIANTS = ["eager", "reslab", "reslab:int8", "onnxruntime", "onnxruntime:int8"]


def calibration(size: int) -> torch.Tensor:
    return torch.randn(32, 3, size, size, generator=torch.Generator().manual_seed(1))


def runner(model: torch.nn.Module, variant: str, x: torch.Tensor) -> Callable[[], None]:
    """A call that classifies `x` with reslab's int8 net or ONNX Runtime (fp32 or int8,
    on reslab's export): case 3 uses the ONNX Runtime fp32 one too."""
    from reslab.inference import export, quantize

    if variant == "reslab:int8":
        fast = quantize(model, [calibration(x.shape[-1])])
        xc = x.contiguous(memory_format=torch.channels_last)
        return lambda: fast(xc)
    import onnxruntime as ort

    int8 = variant == "onnxruntime:int8"
    with tempfile.TemporaryDirectory() as tmp:
        path = export(
            model,
            "onnx",
            Path(tmp) / "m.onnx",
            int8=int8,
            calibration=[calibration(x.shape[-1])] if int8 else None,
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name, xn = sess.get_inputs()[0].name, x.numpy()
    return lambda: sess.run(None, {name: xn})


def run_case(quick: bool, inference_rounds: Callable, record: Callable) -> None:
    """Measure, record and print the table: ms per batch at batch 1, images/s at 32."""
    missing = [m for m in ("torchao", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f'\n6. int8 inference: skipped, needs {" and ".join(missing)} (pip install "reslab[int8,onnx]")'
        )
        return
    size = 224
    # (batch, calls per variant per round, rounds), as in case 3.
    # --quick: one batch size (each is a compile of its own for the int8 net)
    shapes = ((1, 3, 1),) if quick else ((1, 10, 6), (32, 2, 5))
    machine = cpu()
    print(
        f"\n6. int8 inference at {size} px, {machine['cpu']}, {machine['cpus']} CPUs, "
        f"ISA: {' '.join(machine['isa'])}"
        + (f", capped by {machine['isa_limit']}" if "isa_limit" in machine else "")
    )
    for model in ("resnet18",) if quick else ("resnet18", "resnet50"):
        res = {}
        for batch, reps, rounds in shapes:
            p = {"model": model, "batch": batch, "reps": reps, "size": size}
            res[batch] = inference_rounds(VARIANTS, p, rounds)
            for v in VARIANTS:
                record("int8", v, {**p, "rounds": rounds, **machine}, res[batch][v])
        print_table(model, res)


def print_table(model: str, res: dict[int, dict[str, dict]]) -> None:
    """ms per batch-1 call, images/s at the larger batch, and speed against ONNX Runtime."""
    shapes = sorted(res.items())
    (b1, r1), (bn, rn) = shapes[0], shapes[-1]  # one shape under --quick
    print(
        f"  {model:<17} {'ms, batch ' + str(b1):>12} {'img/s, batch ' + str(bn):>15}   "
        f"x ORT fp32 (b{b1}, b{bn})   x ORT int8 (b{b1}, b{bn})"
    )
    for v in VARIANTS:
        a, b = r1.get(v, {}), rn.get(v, {})
        if "seconds" not in a or "seconds" not in b:
            print(f"  {v:<17} failed: {a.get('error') or b.get('error')}")
            continue
        ratios = []
        for ort in ("onnxruntime", "onnxruntime:int8"):
            o1, on = r1.get(ort, {}).get("seconds"), rn.get(ort, {}).get("seconds")
            ratios.append(
                f"{o1 / a['seconds']:5.2f}x {on / b['seconds']:5.2f}x" if o1 and on else "  -"
            )
        print(
            f"  {v:<17} {a['seconds'] * 1e3:12.2f} {bn / b['seconds']:15.1f}   "
            f"{ratios[0]:>20}   {ratios[1]:>20}"
        )
