#!/usr/bin/env bash
# Table 6 at the paper's schedule (64k iterations, batch 128, cifar-paper) on one GPU, in
# chunks that fit a lease of the `device` tool, and cifar10:resnet110 trained as the other
# shipped nets were (cifar-fast, bf16, seed 0). Each net is its own `reslab train` run;
# they share the GPU, started side by side (small CIFAR nets leave most of it idle). A
# run stopped by the chunk's time limit saves its checkpoint (SIGTERM) and is resumed by
# the next chunk when its folder comes back in $RUNS.
#
#   RUNS=.carry/runs NETS="resnet20 resnet32" SECONDS_LEFT=480 PACK=$OUT bash studies/table6-paper.sh
#
# The paper-schedule runs are named RUNS/<net>-s0, as in an experiment folder: their records
# go to docs/results/table6-paper/runs/, and `reslab report` draws and reads them.
#
# Environment: CIFAR (the cifar10-train-jpeg.tar.gz archive), RUNS (run folders, kept),
# NETS (paper-schedule nets), FAST (nets to train with cifar-fast), SECONDS_LEFT (the
# chunk's training time), PACK (where each run folder is packed as a .tar.gz), EXTRA
# (more `reslab train` flags, for a dry run on a CPU).
set -u
CIFAR=${CIFAR:-.carry/cifar10-train-jpeg.tar.gz}
RUNS=${RUNS:-runs/table6}
NETS=${NETS-resnet20 resnet32 resnet44 resnet56 resnet110}
FAST=${FAST-}
SECONDS_LEFT=${SECONDS_LEFT:-480}
PACK=${PACK:-}
EXTRA=${EXTRA:---device cuda --cuda-graphs --threads 4}
fail() { echo "table6-paper.sh: $*" >&2; exit 2; }
[ -f "$CIFAR" ] || fail "CIFAR=$CIFAR: no such archive (cifar10-train-jpeg.tar.gz)"
[[ $SECONDS_LEFT =~ ^[1-9][0-9]*$ ]] || fail "SECONDS_LEFT=$SECONDS_LEFT: not a whole number of seconds"
[ -z "$PACK" ] || { [ -d "$PACK" ] && [ -z "$(ls -A "$PACK")" ]; } ||
    fail "PACK=$PACK: not an empty folder (packs are never written over anything)"
data=$(mktemp -d)
tar xzf "$CIFAR" -C "$data" || fail "CIFAR=$CIFAR: cannot extract the archive"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

finished() { grep -qs '"status": "finished"' "$1/summary.json"; }

train() {  # name, then `reslab train` flags
    local dir=$RUNS/$1; shift
    if finished "$dir"; then
        echo "$dir: finished"; return
    fi
    if [ -d "$dir" ]; then set -- --resume "$dir"; else set -- "$@" --out "$dir"; fi
    # shellcheck disable=SC2086
    timeout -k 60 -s TERM "$SECONDS_LEFT" python3 -m reslab train "$@" $EXTRA \
        --data-dir "$data/cifar10-jpeg" --seed 0 --no-progress >"$dir.log" 2>&1
    echo "$dir: exit $? after $SECONDS s of the chunk"; tail -n 3 "$dir.log"
}
for net in $FAST; do
    train "$net-cifar-fast-bf16" --model "$net" --recipe cifar-fast --amp bf16 &
done
for net in $NETS; do
    train "$net-s0" --model "$net" --recipe cifar-paper --amp bf16 &  # named as reproduce names runs
done
wait
if [ -n "$PACK" ]; then
    for d in "$RUNS"/*/; do
        n=$(basename "$d")
        skip=(--exclude=previous.pt --exclude=.lock)  # a finished run needs only best.pt
        finished "$d" && skip+=(--exclude=last.pt)
        tar czf "$PACK/$n.tar.gz" "${skip[@]}" -C "$RUNS" "$n" "$n.log"
    done
    ls -la "$PACK"
fi
rm -rf "$data"
