"""Would hand-fused batch norm + ReLU (+ residual add) kernels speed up CPU training?

    python benchmarks/fused_bn.py [--models resnet20,resnet56] [--rounds 10] [--quick]

An experiment, not part of reslab (the answer was "barely", so it was not built). It
compiles the C kernels below with the system C compiler (OpenMP, -march=native), wraps
them in an autograd Function and swaps them into BasicBlock and the stem for training:

    forward   one pass for the batch statistics, one pass for normalise + add + ReLU
              (PyTorch: statistics, normalise, then separate add and ReLU passes);
    backward  one pass for the two sums, one for dx (and the residual's gradient), with
              the ReLU mask read from the output (PyTorch: threshold_backward, then
              batch norm's own two passes).

It prints (1) the kernels' largest relative error against PyTorch's, (2) each layer
shape's forward and backward time in a hot loop, and (3) images/s of the whole training
step (channels-last, batch 128, SGD) with PyTorch's ops and with the fused kernels,
timed in interleaved rounds in one process, and their ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from synthetic_step import cifar_step

from reslab.models import blocks, resnet

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <omp.h>

#define BLK 32  /* rows summed in float before adding into double */

/* Rows [M, C] of a channels-last tensor. Thread t of nt reduces its own row range. */
static void sums(const float* a, const float* b, const float* y, const float* shift,
                 int64_t M, int64_t C, double* part, int t, int nt) {
    int64_t r0 = M * t / nt, r1 = M * (t + 1) / nt;
    double* ps = part + (size_t)t * 2 * C; double* pq = ps + C;
    float s1[C], s2[C];
    for (int64_t r = r0; r < r1; r += BLK) {
        int64_t re = r + BLK < r1 ? r + BLK : r1;
        for (int64_t c = 0; c < C; c++) { s1[c] = 0.f; s2[c] = 0.f; }
        for (int64_t i = r; i < re; i++) {
            const float* ar = a + i * C;
            if (b) {  /* backward: a = dy, b = x, y = relu output (mask) */
                const float* br = b + i * C; const float* yr = y + i * C;
                for (int64_t c = 0; c < C; c++) {
                    float dz = (y && yr[c] <= 0.f) ? 0.f : ar[c];
                    s1[c] += dz; s2[c] += dz * (br[c] - shift[c]);
                }
            } else {  /* forward: sums of x - shift and its square */
                for (int64_t c = 0; c < C; c++) { float d = ar[c] - shift[c]; s1[c] += d; s2[c] += d * d; }
            }
        }
        for (int64_t c = 0; c < C; c++) { ps[c] += s1[c]; pq[c] += s2[c]; }
    }
}

void fused_forward(const float* x, const float* res, int64_t M, int64_t C, const float* w,
                   const float* bias, double eps, double momentum, float* run_mean,
                   float* run_var, float* y, float* mean, float* invstd, int relu) {
    int T = omp_get_max_threads();
    double* part = (double*)calloc((size_t)T * 2 * C, sizeof(double));
    float* k = (float*)malloc(sizeof(float) * 2 * C);
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        sums(x, 0, 0, x, M, C, part, t, nt);  /* shifted by row 0 against cancellation */
        #pragma omp barrier
        #pragma omp single
        for (int64_t c = 0; c < C; c++) {
            double s = 0, q = 0;
            for (int i = 0; i < nt; i++) { s += part[(size_t)i * 2 * C + c]; q += part[(size_t)i * 2 * C + C + c]; }
            double m = s / M, var = q / M - m * m; if (var < 0) var = 0;
            double mu = x[c] + m, is = 1.0 / sqrt(var + eps);
            mean[c] = (float)mu; invstd[c] = (float)is;
            k[c] = (float)(w[c] * is); k[C + c] = (float)(bias[c] - mu * w[c] * is);
            run_mean[c] = (float)((1 - momentum) * run_mean[c] + momentum * mu);
            run_var[c] = (float)((1 - momentum) * run_var[c] + momentum * var * M / (M > 1 ? M - 1 : 1));
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            const float* xr = x + r * C; const float* rr = res ? res + r * C : 0; float* yr = y + r * C;
            for (int64_t c = 0; c < C; c++) {
                float v = xr[c] * k[c] + k[C + c] + (rr ? rr[c] : 0.f);
                yr[c] = (relu && v < 0.f) ? 0.f : v;
            }
        }
    }
    free(part); free(k);
}

void fused_backward(const float* dy, const float* y, const float* x, int64_t M, int64_t C,
                    const float* w, const float* mean, const float* invstd, float* dx,
                    float* dres, float* dw, float* db, int relu) {
    int T = omp_get_max_threads();
    double* part = (double*)calloc((size_t)T * 2 * C, sizeof(double));
    float* k = (float*)malloc(sizeof(float) * 3 * C);
    const float* mask = relu ? y : 0;
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        sums(dy, x, mask, mean, M, C, part, t, nt);
        #pragma omp barrier
        #pragma omp single
        for (int64_t c = 0; c < C; c++) {
            double s = 0, q = 0;
            for (int i = 0; i < nt; i++) { s += part[(size_t)i * 2 * C + c]; q += part[(size_t)i * 2 * C + C + c]; }
            double is = invstd[c], k1 = w[c] * is, k2 = -k1 * is * is * q / M;
            k[c] = (float)k1; k[C + c] = (float)k2; k[2 * C + c] = (float)(-k1 * s / M - mean[c] * k2);
            dw[c] = (float)(q * is); db[c] = (float)s;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++) {
            const float* g = dy + r * C; const float* xr = x + r * C; float* o = dx + r * C;
            for (int64_t c = 0; c < C; c++) {
                float dz = (mask && mask[r * C + c] <= 0.f) ? 0.f : g[c];
                o[c] = dz * k[c] + xr[c] * k[C + c] + k[2 * C + c];
                if (dres) dres[r * C + c] = dz;
            }
        }
    }
    free(part); free(k);
}
"""

CL = torch.channels_last
LIB: ctypes.CDLL | None = None


def build(workdir: Path) -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("fused_bn: no C compiler found (set CC, or install gcc)")
    src, lib = workdir / "fused_bn.c", workdir / "fused_bn.so"
    src.write_text(C_SOURCE)
    cmd = [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", str(src), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fused_bn: compiling the kernels failed ({' '.join(cmd)}):\n{proc.stderr}")
    # torch is imported first, so the kernels share its OpenMP runtime and threads.
    so = ctypes.CDLL(str(lib))
    P, L, D, N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    so.fused_forward.argtypes = [P, P, L, L, P, P, D, D, P, P, P, P, P, N]
    so.fused_backward.argtypes = [P, P, P, L, L, P, P, P, P, P, P, P, N]
    return so


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class FusedBNReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, run_mean, run_var, momentum, eps, res, relu):  # noqa: ANN001
        assert LIB is not None
        x = x.contiguous(memory_format=CL)
        res = None if res is None else res.contiguous(memory_format=CL)
        chans = x.shape[1]
        y = torch.empty_like(x)
        mean, invstd = torch.empty(chans), torch.empty(chans)
        LIB.fused_forward(
            _ptr(x),
            _ptr(res),
            x.numel() // chans,
            chans,
            _ptr(weight),
            _ptr(bias),
            eps,
            momentum,
            _ptr(run_mean),
            _ptr(run_var),
            _ptr(y),
            _ptr(mean),
            _ptr(invstd),
            relu,
        )
        ctx.save_for_backward(x, y, weight, mean, invstd)
        ctx.has_res, ctx.relu = res is not None, relu
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001
        assert LIB is not None
        x, y, weight, mean, invstd = ctx.saved_tensors
        dy = dy.contiguous(memory_format=CL)
        chans = x.shape[1]
        dx = torch.empty_like(x)
        dres = torch.empty_like(x) if ctx.has_res else None
        dw, db = torch.empty(chans), torch.empty(chans)
        LIB.fused_backward(
            _ptr(dy),
            _ptr(y),
            _ptr(x),
            x.numel() // chans,
            chans,
            _ptr(weight),
            _ptr(mean),
            _ptr(invstd),
            _ptr(dx),
            _ptr(dres),
            _ptr(dw),
            _ptr(db),
            ctx.relu,
        )
        return dx, dw, db, None, None, None, None, dres, None


def bn_relu(x: torch.Tensor, bn: torch.nn.BatchNorm2d, res: torch.Tensor | None = None):
    if not bn.training:
        out = bn(x) if res is None else bn(x) + res
        return F.relu(out)
    bn.num_batches_tracked.add_(1)
    args = (bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps)
    return FusedBNReLU.apply(x, *args, res, 1)


def fused_block_forward(self: blocks.BasicBlock, x: torch.Tensor) -> torch.Tensor:
    out = self.conv2(bn_relu(self.conv1(x), self.bn1))
    if not self.residual:
        return bn_relu(out, self.bn2)
    return bn_relu(out, self.bn2, x if self.downsample is None else self.downsample(x))


def fused_stem(self: resnet.ResNet, x: torch.Tensor) -> torch.Tensor:
    return self.maxpool(bn_relu(self.conv1(x), self.bn1))


STANDARD = (blocks.BasicBlock.forward, resnet.ResNet.forward_stem)


def use_fused(on: bool) -> None:
    block, stem = (fused_block_forward, fused_stem) if on else STANDARD
    blocks.BasicBlock.forward, resnet.ResNet.forward_stem = block, stem  # type: ignore[method-assign]


def check() -> float:
    """Largest relative error of the fused kernels against PyTorch's ops."""
    import copy

    worst = 0.0
    for chans, size, with_res in ((16, 32, False), (16, 32, True), (64, 8, True), (3, 5, False)):
        x = torch.randn(8, chans, size, size).contiguous(memory_format=CL) * 3 + 1
        bn = torch.nn.BatchNorm2d(chans)
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.5, 0.5)
        ref_bn = copy.deepcopy(bn)
        res = torch.randn_like(x) if with_res else None
        leaves = [x.clone().requires_grad_() for _ in range(2)]
        rleaves = [res.clone().requires_grad_() for _ in range(2)] if with_res else [None, None]
        out = bn_relu(leaves[0], bn, rleaves[0])
        ref = ref_bn(leaves[1]) if res is None else ref_bn(leaves[1]) + rleaves[1]
        ref = torch.relu(ref)
        grad = torch.randn_like(out)
        out.backward(grad)
        ref.backward(grad)
        pairs = [
            (out, ref),
            (leaves[0].grad, leaves[1].grad),
            (bn.weight.grad, ref_bn.weight.grad),
            (bn.bias.grad, ref_bn.bias.grad),
            (bn.running_mean, ref_bn.running_mean),
            (bn.running_var, ref_bn.running_var),
        ]
        if with_res:
            pairs.append((rleaves[0].grad, rleaves[1].grad))
        for a, b in pairs:
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item())
    return worst


def timed(fn, reps: int) -> float:  # noqa: ANN001
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def layer_times(x: torch.Tensor, bn: torch.nn.BatchNorm2d, fused: bool, reps: int):
    """Hot-loop milliseconds of BN+ReLU forward and of its backward on one input."""

    def forward() -> torch.Tensor:
        return bn_relu(x, bn) if fused else torch.relu(bn(x))

    out = forward()
    grad = torch.randn_like(out)
    with torch.no_grad():
        forward_ms = timed(forward, reps)
    backward_ms = timed(lambda: torch.autograd.grad(out, [x], grad, retain_graph=True), reps)
    return forward_ms, backward_ms


def kernel_times(batch: int, reps: int) -> None:
    print("hot-loop ms per call (forward: BN+ReLU; backward: their gradients)")
    for chans, size in ((16, 32), (32, 16), (64, 8)):
        x = torch.randn(batch, chans, size, size).contiguous(memory_format=CL).requires_grad_()
        bn = torch.nn.BatchNorm2d(chans)
        fs, bs = layer_times(x, bn, False, reps)
        ff, bf = layer_times(x, bn, True, reps)
        print(
            f"  {batch}x{chans}x{size}x{size}: forward {fs:.2f} -> {ff:.2f} ms ({fs / ff:.2f}x), "
            f"backward {bs:.2f} -> {bf:.2f} ms ({bs / bf:.2f}x)"
        )


def step_rates(name: str, batch: int, rounds: int, steps: int) -> tuple[float, float]:
    step = cifar_step(name, batch)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for on in (False, True):
        use_fused(on)
        for _ in range(2):
            step()
    for _ in range(rounds):
        for on in (False, True):
            use_fused(on)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates[on].append(batch * steps / (time.perf_counter() - start))
    use_fused(False)
    return statistics.median(rates[False]), statistics.median(rates[True])


def main() -> None:
    global LIB
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet20,resnet56")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds per model")
    ap.add_argument("--quick", action="store_true", help="tiny batch, one round (for tests)")
    args = ap.parse_args()
    batch, rounds, steps, reps = (8, 1, 1, 2) if args.quick else (128, args.rounds, 6, 50)
    with tempfile.TemporaryDirectory() as tmp:
        LIB = build(Path(tmp))
        err = check()
        print(f"largest relative error against PyTorch: {err:.1e}")
        if err > 1e-4:
            sys.exit("fused_bn: the kernels disagree with PyTorch")
        kernel_times(batch, reps)
        print(
            f"training step, batch {batch}, {rounds} interleaved rounds of {steps} steps (median)"
        )
        for name in args.models.split(","):
            standard, fused = step_rates(name, batch, rounds, steps)
            print(
                f"  {name}: PyTorch ops {standard:.1f} img/s, fused {fused:.1f} img/s, "
                f"ratio {fused / standard:.3f}"
            )


if __name__ == "__main__":
    main()
