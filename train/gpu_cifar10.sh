#!/usr/bin/env bash
# The CIFAR-10 `train all` on one GPU (the command that trained weights/cifar10):
#   bash train/gpu_cifar10.sh DATA OUT [DEADLINE_SECONDS]      (see train/gpu.sh)
exec bash "$(dirname "$0")/gpu.sh" cifar10 "$@"
