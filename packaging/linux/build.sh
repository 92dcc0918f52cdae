#!/usr/bin/env bash
# Build the Linux onedir app, smoke-test it headless and offline, then pack a .tar.gz and a .deb.
# PY: the Python with localchat, llama-cpp-python and pyinstaller installed (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
VERSION=$($PY -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)

# the starter model ships inside the app, so the installed app chats with no download
mkdir -p resources/models
cp -f "$($PY -m localchat.core.models.starter | tail -n 1)" resources/models/

t0=$(date +%s)
$PY -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/localchat.spec
echo "build: $(( $(date +%s) - t0 )) s"
test -f dist/localchat/_internal/llama_cpp/lib/libllama.so || { echo "libllama.so missing from the build" >&2; exit 1; }

# smoke test: a fresh home, an empty machine cache (the bundled starter must be the one used), no network, no display.
# Where this machine can make a user + network namespace, the frozen worker must be isolated (policy require).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
policy=auto
if command -v unshare >/dev/null && unshare --user --net true 2>/dev/null; then policy=require; fi
echo "self-test isolation policy: $policy"
QT_QPA_PLATFORM=offscreen LOCALCHAT_HOME="$tmp/home" LOCALCHAT_MACHINE_CACHE="$tmp/machine-cache" HF_HUB_OFFLINE=1 \
    LOCALCHAT_ISOLATION=$policy dist/localchat/localchat --self-test > dist/self-test.json
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print("self-test: ok=%s answer=%r isolation=%s load_s=%s total_s=%s"
    % (d["ok"], d["answer"], d["isolation"].get("mode"), d["load_s"], d["total_s"]))' dist/self-test.json

du -sh dist/localchat | awk '{print "bundle size: " $1}'
tar -C dist -czf "dist/localchat-${VERSION}-linux-${ARCH}.tar.gz" localchat

# .deb: /opt/localchat + a launcher in /usr/bin + desktop entry and icons
pkg=build/deb/localchat_${VERSION}_${ARCH}
rm -rf "$pkg"
mkdir -p "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/usr/share/applications"
cp -a dist/localchat "$pkg/opt/localchat"
ln -s /opt/localchat/localchat "$pkg/usr/bin/localchat"
cp packaging/linux/localchat.desktop "$pkg/usr/share/applications/"
icons=resources/icons
if [ -f "$icons/localchat-256.png" ]; then
  for png in "$icons"/localchat-*.png; do
    size=$(basename "$png" .png); size=${size#localchat-}
    mkdir -p "$pkg/usr/share/icons/hicolor/${size}x${size}/apps"
    cp "$png" "$pkg/usr/share/icons/hicolor/${size}x${size}/apps/localchat.png"
  done
  if [ -f "$icons/localchat.svg" ]; then
    mkdir -p "$pkg/usr/share/icons/hicolor/scalable/apps" && cp "$icons/localchat.svg" "$pkg/usr/share/icons/hicolor/scalable/apps/"
  fi
else
  echo "warning: no resources/icons/localchat-256.png: the .deb has no icon" >&2
fi
sed -e "s/@VERSION@/${VERSION}/" -e "s/@ARCH@/${ARCH}/" \
    -e "s/@SIZE@/$(du -sk "$pkg/opt" | cut -f1)/" packaging/linux/control.in > "$pkg/DEBIAN/control"
if command -v dpkg-deb >/dev/null; then
  dpkg-deb --root-owner-group -Zxz --build "$pkg" "dist/localchat_${VERSION}_${ARCH}.deb" >/dev/null
  echo "deb: dist/localchat_${VERSION}_${ARCH}.deb"
else
  echo "dpkg-deb not found (apt-get install dpkg-dev): .deb skipped" >&2
fi
ls -la dist
