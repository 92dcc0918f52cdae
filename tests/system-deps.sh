#!/usr/bin/env bash
# Debian packages the test-suite uses: Xvfb + the X/GL libraries Qt's xcb plugin loads, iproute2 (ip netns),
# util-linux (unshare), strace (the trace that proves where llama.cpp's libraries are opened). Installed only when missing and when we can (root + apt-get); otherwise the tests that
# need them skip with the reason.
set -u
pkgs=(xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-render-util0
      libxcb-xinerama0 libxcb-shape0 libegl1 libgl1 libfontconfig1 libdbus-1-3 iproute2 util-linux strace
      fonts-dejavu-core x11-apps imagemagick)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${missing[*]} (not root or no apt-get); tests that need them will skip" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "system-deps: apt-get failed; tests that need these packages will skip" >&2
exit 0
