#!/usr/bin/env bash
# The `gpu` budgets of `reslab reproduce` (issue 36) on a lent GPU, in time-limited chunks,
# in the issue's order: Figure 4 / Table 2 on Imagenette, then Table 3 (options B and C,
# A reused from Figure 4), then Table 6's remainder at the paper's schedule (ResNet-44,
# 56, 110, plain-20, plain-56). Each stage is one `reslab reproduce NAME --budget gpu
# --jobs N` (N runs side by side on the GPU); a stage starts only once the one before it
# has finished, and the chunk's time limit stops it with its checkpoints saved (SIGTERM).
#
# Three modes; the device's limits shape them (64 MiB travels each way, 16 MiB a file):
#
#   # here, once: the data in a form that travels (Imagenette 144 px WebP, ~31 MB)
#   bash studies/gpu-budgets.sh prepare /work/data/imagenette CIFAR_ARCHIVE .carry
#   # on the device (carry .carry): one chunk, its records packed into $OUT
#   SECONDS_LEFT=480 PACK=$OUT bash studies/gpu-budgets.sh
#   # here, after each call: merge what came back, refresh what the next call carries
#   bash studies/gpu-budgets.sh unpack FILES_AT results/gpu .carry/runs
#
# What travels back: each run's records (config, metrics, summary, views, logs), best.pt
# and last.pt where they are under 15 MiB (the CIFAR nets: ResNet-110's last.pt is ~14
# MB), in parts of 15 MiB ($PACK/runs.tar.gz.00, .01, ...). An Imagenette net's
# checkpoint (90-175 MB) cannot travel: an Imagenette run comes back only once it has
# finished and been scored in 10 crops; one cut off by the time limit starts over in the
# next chunk, so a chunk should leave time for the runs it starts (about 1-2.5 minutes
# each alone, an estimate: experiments.py). Nothing is packed that cannot be resumed.
#
# Environment (device mode): DATA (folder holding imagenette-144.tar and/or
# cifar10-train-jpeg.tar.gz; a stage whose data is not there is skipped), RUNS (the
# experiment folders, carried in and packed out), STAGES, BUDGET (gpu; smoke for tests),
# SECONDS_LEFT (the chunk's time), PACK (an empty folder), JOBS_IMAGENETTE and JOBS_CIFAR
# (runs side by side), FLAGS (more `reslab reproduce` flags, for a CPU test), DATA_ROOT
# (where archives are extracted).
set -u
fail() { echo "gpu-budgets.sh: $*" >&2; exit 2; }
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
MIB15=$((15 * 1024 * 1024))

if [ "${1:-}" = prepare ]; then  # SRC_IMAGENETTE CIFAR_ARCHIVE CARRY
    [ $# -eq 4 ] || fail "prepare takes IMAGENETTE_DIR CIFAR_ARCHIVE CARRY_DIR"
    [ -d "$2/train" ] || fail "$2: no train/ folder (an Imagenette tree)"
    [ -f "$3" ] || fail "$3: no such archive (cifar10-train-jpeg.tar.gz)"
    mkdir -p "$4" && cp "$3" "$4/cifar10-train-jpeg.tar.gz" || fail "$4: cannot write"
    tmp=$(mktemp -d)
    # 144 px: the centre view's 146 px (256 scaled to 128 px crops) at about its own size;
    # WebP quality 70: 31 MB for 9,469 images, where JPEG at 160 px would take 66-93 MB.
    python3 - "$2" "$tmp/imagenette" <<'EOF' || fail "$2: cannot re-encode the images"
import sys
from pathlib import Path
from PIL import Image
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for f in sorted(src.glob("train/*/*")):
    out = dst / f.relative_to(src).with_suffix(".webp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(f) as im:
        im.convert("RGB").resize((144, 144), Image.BICUBIC).save(out, "WEBP", quality=70)
EOF
    tar cf "$4/imagenette-144.tar" -C "$tmp" imagenette && rm -rf "$tmp"
    du -sh "$4"/*
    exit 0
fi

if [ "${1:-}" = unpack ]; then  # PARTS KEEP CARRY
    [ $# -eq 4 ] || fail "unpack takes PARTS_DIR KEEP_DIR CARRY_DIR"
    ls "$2"/runs.tar.gz.* >/dev/null 2>&1 || fail "$2: no runs.tar.gz.* parts"
    mkdir -p "$3" "$4" || fail "$3 or $4: cannot make the folder"
    cat "$2"/runs.tar.gz.* | tar xzf - -C "$3" || fail "$2: the parts do not unpack"
    # The next call carries everything but best.pt (kept here; a resumed run writes a new
    # one only if it beats it) and the finished runs' last.pt.
    rm -rf "${4:?}"/* && cp -a "$3"/. "$4"/ || fail "$4: cannot copy into it"
    find "$4" -name best.pt -delete
    for s in "$4"/*/runs/*/summary.json; do
        [ -f "$s" ] && grep -qs '"status": "finished"' "$s" && rm -f "$(dirname "$s")/checkpoints/last.pt"
    done
    du -sh "$4"
    exit 0
fi

DATA=${DATA:-.carry}
RUNS=${RUNS:-.carry/runs}
STAGES=${STAGES-imagenet-degradation shortcuts degradation}
BUDGET=${BUDGET:-gpu}
SECONDS_LEFT=${SECONDS_LEFT:-480}
PACK=${PACK:-}
JOBS_IMAGENETTE=${JOBS_IMAGENETTE:-2}
JOBS_CIFAR=${JOBS_CIFAR:-2}
FLAGS=${FLAGS:-}
DATA_ROOT=${DATA_ROOT:-/tmp/gpu-budgets-data}
[ -d "$DATA" ] || fail "DATA=$DATA: no such folder"
[[ $SECONDS_LEFT =~ ^[1-9][0-9]*$ ]] || fail "SECONDS_LEFT=$SECONDS_LEFT: not a whole number of seconds"
for j in "$JOBS_IMAGENETTE" "$JOBS_CIFAR"; do
    [[ $j =~ ^[1-9][0-9]*$ ]] || fail "JOBS_IMAGENETTE/JOBS_CIFAR=$j: not a whole number >= 1"
done
for s in $STAGES; do
    case $s in imagenet-degradation | shortcuts | degradation) ;;
    *) fail "STAGES: unknown stage $s (imagenet-degradation, shortcuts, degradation)" ;;
    esac
done
[ -z "$PACK" ] || { [ -d "$PACK" ] && [ -z "$(ls -A "$PACK")" ]; } ||
    fail "PACK=$PACK: not an empty folder (packs are never written over anything)"
mkdir -p "$RUNS/logs" "$DATA_ROOT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

data_for() {  # stage -> the extracted data folder, or nothing when it was not carried
    local archive dir
    case $1 in
    degradation) archive=$DATA/cifar10-train-jpeg.tar.gz dir=$DATA_ROOT/cifar10-jpeg ;;
    *) archive=$DATA/imagenette-144.tar dir=$DATA_ROOT/imagenette ;;
    esac
    [ -f "$archive" ] || return 0
    [ -d "$dir" ] || tar xf "$archive" -C "$DATA_ROOT" || fail "$archive: cannot extract it"
    echo "$dir"
}

for stage in $STAGES; do
    dir=$(data_for "$stage") || exit 2  # an archive that does not extract: said, exit 2
    if [ -z "$dir" ]; then echo "$stage: skipped, its data was not carried"; continue; fi
    left=$((SECONDS_LEFT - SECONDS))
    if [ "$left" -lt 60 ]; then echo "$stage: not started, ${left}s left"; break; fi
    jobs=$JOBS_IMAGENETTE extra=()
    [ "$stage" = degradation ] && jobs=$JOBS_CIFAR
    [ "$stage" = shortcuts ] && extra=(--reuse "$RUNS/imagenet-degradation-$BUDGET")
    log=$RUNS/logs/$stage-$BUDGET-$(date -u +%Y%m%dT%H%M%S).log
    # shellcheck disable=SC2086
    timeout -k 90 -s TERM "$left" python3 -m reslab reproduce "$stage" --budget "$BUDGET" \
        --data-dir "$dir" --out "$RUNS/$stage-$BUDGET" --jobs "$jobs" --no-progress \
        "${extra[@]}" $FLAGS >"$log" 2>&1
    rc=$?
    echo "$stage: exit $rc after $SECONDS s of the chunk"; tail -n 4 "$log"
    [ $rc -eq 0 ] || break # the next stage waits for this one
done

[ -n "$PACK" ] || exit 0
# What can come back and be resumed from (see the header); everything else stays here.
small() { [ -f "$1" ] && [ "$(stat -c %s "$1")" -le $MIB15 ]; }
keep=(logs)
for exp in "$RUNS"/*/runs; do
    exp=$(basename "$(dirname "$exp")")
    while IFS= read -r f; do keep+=("$f"); done < <(cd "$RUNS" && find "$exp" -maxdepth 1 -type f ! -name .lock)
    case $exp in degradation-* | very-deep-*) views=0 ;; *) views=1 ;; esac
    for run in "$RUNS/$exp"/runs/*/; do
        run=${run%/} rel=$exp/runs/$(basename "$run")
        need_last=1  # an unfinished run, or a finished one still to be scored in 10 crops
        if grep -qs '"status": "finished"' "$run/summary.json"; then
            need_last=0
            [ $views -eq 1 ] && [ ! -f "$run/views.json" ] && need_last=1
        fi
        if [ $need_last -eq 1 ] && ! small "$run/checkpoints/last.pt"; then
            echo "not packed, starts over next time: $rel"; continue
        fi
        while IFS= read -r f; do keep+=("$f"); done < <(cd "$RUNS" && find "$rel" -type f ! -path '*/checkpoints/*' ! -name .lock)
        small "$run/checkpoints/best.pt" && keep+=("$rel/checkpoints/best.pt")
        [ $need_last -eq 1 ] && keep+=("$rel/checkpoints/last.pt")
    done
done
tar czf - -C "$RUNS" "${keep[@]}" | split -b 15m -d - "$PACK/runs.tar.gz."
ls -la "$PACK"
parts=$(find "$PACK" -name 'runs.tar.gz.*' | wc -l)
[ "$parts" -le 8 ] || echo "gpu-budgets.sh: $parts parts, more than the 8 files that come back" >&2
