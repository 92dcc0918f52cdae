#!/usr/bin/env bash
# Build localchat.app and a .dmg on macOS (Apple silicon: llama-cpp-python builds with Metal by default).
# Signing and notarisation run when these are set (see docs/PACKAGING.md):
#   CODESIGN_IDENTITY="Developer ID Application: Name (TEAMID)"   NOTARY_PROFILE=<notarytool keychain profile>
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -e ".[package]"
VERSION=$(.venv/bin/python -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')

# the starter model ships inside the app
mkdir -p resources/models
cp -f "$(.venv/bin/python -m localchat.core.models.starter | tail -n 1)" resources/models/

# icon: the pre-rendered PNGs (resources/icons/localchat-<size>.png) -> iconset -> icns
iconset=build/localchat.iconset; rm -rf "$iconset"; mkdir -p "$iconset"
for s in 16 32 128 256 512; do
  cp "resources/icons/localchat-$s.png" "$iconset/icon_${s}x${s}.png"
  if [ -f "resources/icons/localchat-$((s*2)).png" ]; then
    cp "resources/icons/localchat-$((s*2)).png" "$iconset/icon_${s}x${s}@2x.png"
  else
    sips -z $((s*2)) $((s*2)) "resources/icons/localchat-$s.png" --out "$iconset/icon_${s}x${s}@2x.png" >/dev/null
  fi
done
iconutil -c icns "$iconset" -o packaging/macos/localchat.icns

.venv/bin/python -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/localchat.spec
app=dist/localchat.app
test -f "$app/Contents/Frameworks/llama_cpp/lib/libllama.dylib" || { echo "libllama.dylib missing" >&2; exit 1; }

# smoke test: fresh home, empty machine cache (the bundled starter must be used), no display
tmp=$(mktemp -d)
QT_QPA_PLATFORM=offscreen LOCALCHAT_HOME="$tmp/home" LOCALCHAT_MACHINE_CACHE="$tmp/mc" HF_HUB_OFFLINE=1 \
  "$app/Contents/MacOS/localchat" --self-test | tee dist/self-test.json
rm -rf "$tmp"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  # inside-out: every Mach-O first (dylibs, .so, the Python framework), then the bundle itself
  find "$app/Contents" -type f \( -name '*.dylib' -o -name '*.so' -o -perm -u+x \) -print0 |
    xargs -0 codesign --force --options runtime --timestamp --entitlements packaging/macos/entitlements.plist \
      --sign "$CODESIGN_IDENTITY"
  codesign --force --options runtime --timestamp --entitlements packaging/macos/entitlements.plist \
    --sign "$CODESIGN_IDENTITY" "$app"
  codesign --verify --deep --strict --verbose=2 "$app"
fi

dmg="dist/localchat-${VERSION}-macos-$(uname -m).dmg"
staging=build/dmg; rm -rf "$staging"; mkdir -p "$staging"
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"  # drag-to-install
hdiutil create -volname localchat -srcfolder "$staging" -ov -format UDZO "$dmg"
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$dmg"
fi
if [ -n "${NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
  spctl --assess --type open --context context:primary-signature --verbose "$dmg"
fi
echo "dmg: $dmg"
