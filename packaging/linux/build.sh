#!/usr/bin/env bash
# Build the Linux onedir app, smoke-test it headless and offline, then pack a .tar.gz and a .deb.
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

# smoke test: a fresh home, no network needed, no display
home=$(mktemp -d)
QT_QPA_PLATFORM=offscreen LOCALCHAT_HOME="$home" HF_HUB_OFFLINE=1 dist/localchat/localchat --self-test \
    | tee dist/self-test.json
rm -rf "$home"

du -sh dist/localchat | awk '{print "bundle size: " $1}'
tar -C dist -czf "dist/localchat-${VERSION}-linux-${ARCH}.tar.gz" localchat

# .deb: /opt/localchat + a launcher in /usr/bin + desktop entry and icon
pkg=build/deb/localchat_${VERSION}_${ARCH}
rm -rf "$pkg"
mkdir -p "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/usr/share/applications" "$pkg/usr/share/icons/hicolor/256x256/apps"
cp -a dist/localchat "$pkg/opt/localchat"
ln -s /opt/localchat/localchat "$pkg/usr/bin/localchat"
cp packaging/linux/localchat.desktop "$pkg/usr/share/applications/"
cp resources/icons/localchat.png "$pkg/usr/share/icons/hicolor/256x256/apps/localchat.png"
sed -e "s/@VERSION@/${VERSION}/" -e "s/@ARCH@/${ARCH}/" \
    -e "s/@SIZE@/$(du -sk "$pkg/opt" | cut -f1)/" packaging/linux/control.in > "$pkg/DEBIAN/control"
if command -v dpkg-deb >/dev/null; then
  dpkg-deb --root-owner-group --build "$pkg" "dist/localchat_${VERSION}_${ARCH}.deb" >/dev/null
  echo "deb: dist/localchat_${VERSION}_${ARCH}.deb"
else
  echo "dpkg-deb not found: .deb skipped"
fi
ls -la dist
