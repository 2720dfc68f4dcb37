#!/usr/bin/env bash
# Installs, with apt-get, every Debian package berth needs to build and test.
# Idempotent: only missing packages are installed. Needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev libtss2-dev libsystemd-dev libcryptsetup-dev libblkid-dev
  libcap-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libcurl4-openssl-dev libgfshare-dev libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev
  # real parts the tests run
  swtpm swtpm-tools gnutls-bin tpm2-tools etcd-server etcd-client
  # tools the tests call
  gnuplot-nox openssl python3 python3-yaml curl procps iproute2 util-linux e2fsprogs dosfstools xfsprogs fdisk cryptsetup-bin
  # every kind of non-blank disk the disk probe's tests make (tests/unit/agent/disk_test.cc; mdadm
  # and lvm2 go into a QEMU guest, tests/e2e): filesystems, RAID and LVM members, bcache, erofs
  btrfs-progs f2fs-tools exfatprogs ntfs-3g jfsutils nilfs-tools udftools reiserfsprogs
  bcache-tools erofs-utils mdadm lvm2
  # the QEMU guest tests
  linux-image-amd64 busybox-static qemu-system-x86 cpio kmod
  time  # GNU time: peak memory in the guest (qemu/bench-disk)
  # the node image (image/build, docs/image.md) and its QEMU boots: OVMF measures what it boots
  debootstrap squashfs-tools mtools systemd-boot-efi binutils ovmf
  # the fuzz targets (tests/fuzz/run): clang, its sanitizer/libFuzzer runtimes, llvm-symbolizer
  clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages"
