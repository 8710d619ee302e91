#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian's packages.
# Idempotent: packages already present are skipped, so a second run is quick
# and needs no network.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libssl-dev liblmdb-dev libspdlog-dev libfmt-dev
  libfuse3-dev fuse3
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libboost-dev libp11-kit-dev
  # tests and benchmarks
  python3 python3-boto3 python3-cryptography awscli curl openssl
  fio fsmark gocryptfs attr xxd util-linux iproute2
  softhsm2 libgfshare-bin
  # fuzzing (scripts/fuzz.sh): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all dependencies present"
