#!/usr/bin/env bash
# dev/gpu_prebuild.sh — every binary dev/gpu_check.sh runs, built into one folder (default gpu_build/):
#   DIR/bf16/{train_t5cu,test_t5cu,rmsnorm,ffn_act,crossentropy,attention,...} and the same in DIR/fp32/;
#   DIR/cudnn/{train_t5cu,test_t5cu,attention}: the bf16 build with the cuDNN attention path (USE_CUDNN=1).
#   DIR/profile/train_t5cu: the bf16 trainer with the --bench profiler compiled in (PROFILE=1).
# Build here, where compiling costs no GPU time, and carry DIR to a lent GPU machine; gpu_check.sh uses
# DIR when its programs load there and builds with this same script (GPU_ARCH=native) when they do not.
#   bash dev/gpu_prebuild.sh [DIR]        (GPU_ARCH=sm_90 by default: H100/H200; NO_MPI=1: the GPU
#                                          machine may lack libmpi, so NCCL bootstraps from a directory)
# The CPU engine is compiled for x86-64-v2, not -march=native: the GPU machine's processor may differ.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-gpu_build}
ARCH=${GPU_ARCH:-sm_90}
JOBS=${JOBS:-$(nproc)}
for p in bf16 fp32; do
    obj="$DIR/obj_$p"
    mkdir -p "$DIR/$p" "$obj"
    P=$(echo "$p" | tr a-z A-Z)
    CFLAGS="-O3 -march=x86-64-v2" make -s -j"$JOBS" BUILD="$obj" PRECISION="$P" GPU_ARCH="$ARCH" NO_MPI=1 \
        "$obj/t5_cpu.o" >/dev/null
    for t in train_t5cu test_t5cu; do # the top Makefile's recipes, with the binary moved into DIR/p
        CFLAGS="-O3 -march=x86-64-v2" make -s -B BUILD="$obj" PRECISION="$P" GPU_ARCH="$ARCH" NO_MPI=1 "$t" \
            -o "$obj/t5_cpu.o" >/dev/null
        mv "$t" "$DIR/$p/$t"
    done
    make -s -C dev/cuda -B -j"$JOBS" PRECISION="$P" GPU_ARCH="$ARCH" CPU_OBJ="$(pwd)/$obj/t5_cpu.o" \
        KERNEL_DIR="$(pwd)/$DIR/$p" all
done
# the profiler build (PROFILE=1, bf16): DIR/profile/train_t5cu, for the stages that time phases and operations
mkdir -p "$DIR/profile"
CFLAGS="-O3 -march=x86-64-v2" make -s -B BUILD="$DIR/obj_bf16" GPU_ARCH="$ARCH" NO_MPI=1 PROFILE=1 train_t5cu \
    -o "$DIR/obj_bf16/t5_cpu.o" >/dev/null
mv train_t5cu "$DIR/profile/train_t5cu"
# the cuDNN attention build (USE_CUDNN=1, bf16): DIR/cudnn/{train_t5cu,test_t5cu}, when cuDNN and the
# frontend headers are here (it links libcudnn and libnvrtc, which the GPU machine may lack: its own folder)
obj="$DIR/obj_cudnn"
mkdir -p "$obj"
if CFLAGS="-O3 -march=x86-64-v2" make -s -j"$JOBS" BUILD="$obj" USE_CUDNN=1 GPU_ARCH="$ARCH" NO_MPI=1 \
        "$obj/t5_cpu.o" "$obj/cudnn_att.o" >/dev/null; then
    mkdir -p "$DIR/cudnn"
    for t in train_t5cu test_t5cu; do
        CFLAGS="-O3 -march=x86-64-v2" make -s -B BUILD="$obj" USE_CUDNN=1 GPU_ARCH="$ARCH" NO_MPI=1 "$t" \
            -o "$obj/t5_cpu.o" -o "$obj/cudnn_att.o" >/dev/null
        mv "$t" "$DIR/cudnn/$t"
    done
    make -s -C dev/cuda -B USE_CUDNN=1 GPU_ARCH="$ARCH" CPU_OBJ="$(pwd)/$obj/t5_cpu.o" CUDNN_OBJ="$(pwd)/$obj/cudnn_att.o" \
        KERNEL_DIR="$(pwd)/$DIR/cudnn" attention
else
    echo "no cuDNN build: cuDNN or the cudnn-frontend headers are missing (pip install --no-deps nvidia-cudnn-frontend==1.32.0)"
fi
ls -la "$DIR"/bf16 "$DIR"/fp32 "$DIR"/profile "$DIR"/cudnn 2>/dev/null
