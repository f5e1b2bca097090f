#!/usr/bin/env bash
# Installs kilolayer's Debian dependencies that are missing. Idempotent and quick when all are there:
# it asks dpkg first and runs apt-get only for what is absent. launch/build.sh skips it with
# KL_NO_SETUP=1 or when a system library is switched off (-DKL_MPI=OFF and the like).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools zlib1g-dev
  libboost-program-options-dev
  libopenblas-openmp-dev
  libdnnl-dev   # oneDNN: the CPU's fp32 and bf16 matrix products (issue 16)
  libblis-dev libxsmm-dev   # bench/gemm_candidates.cpp only: the other candidates
  libgtest-dev googletest
  python3-torch python3-h5py python3-numpy python3-matplotlib
  fortunes
  libsentencepiece-dev sentencepiece   # kilolayer tokenize: BPE models (issue 15)
  clang libclang-rt-14-dev   # tests/fuzz/run_fuzzers.sh: libFuzzer with the address and UB sanitizers
  iproute2   # tests/multihost_netns.sh: network namespaces as hosts
  slurmctld slurmd slurm-client munge   # tests/slurm.sh: a one-node slurm on this host
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: no apt-get on this machine: install those yourself, or build without the system libraries" >&2
  echo "       (KL_NO_SETUP=1 ./launch/build.sh -DKL_MPI=OFF -DKL_HDF5=OFF -DKL_BOOST=OFF -DKL_BLAS=OFF -DKL_ONEDNN=OFF -DKL_SENTENCEPIECE=OFF)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
