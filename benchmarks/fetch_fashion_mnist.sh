#!/usr/bin/env bash
# Fashion-MNIST's four IDX files into .cache/fashion-mnist, without root: Debian's dataset-fashion-mnist package is
# downloaded (apt-get download) and unpacked (dpkg -x). If the package is installed, its folder is used as is.
set -euo pipefail
DEST="${1:-.cache/fashion-mnist}"
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
have_all() { for f in $FILES; do [ -s "$1/$f" ] || return 1; done; }

if have_all "$DEST/usr/share/datasets/fashion-mnist"; then echo "Fashion-MNIST already in $DEST"; exit 0; fi
if have_all /usr/share/datasets/fashion-mnist; then
    echo "Fashion-MNIST is installed in /usr/share/datasets/fashion-mnist (used directly)"; exit 0
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null || {
    echo "no apt-get/dpkg here: put the four files ($FILES) in a folder and pass --idx-dir FOLDER" >&2; exit 1; }
mkdir -p "$DEST"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
    echo "apt-get download failed; trying apt-get update first (needs root)" >&2
    if ! apt-get update >/dev/null 2>&1 || ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
        echo "could not download dataset-fashion-mnist; as root: apt-get update && apt-get install" \
             "dataset-fashion-mnist, or pass --idx-dir FOLDER with the four files" >&2
        exit 1
    fi
fi
dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$DEST"
have_all "$DEST/usr/share/datasets/fashion-mnist" || { echo "the package did not contain the four IDX files" >&2; exit 1; }
echo "Fashion-MNIST in $DEST/usr/share/datasets/fashion-mnist"
