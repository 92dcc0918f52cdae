#!/usr/bin/env bash
# Build localchat.app and a .dmg on macOS. Metal is on by default in llama-cpp-python's build on Apple Silicon.
# Signing and notarisation run when the identities are set:
#   CODESIGN_IDENTITY="Developer ID Application: …"  NOTARY_PROFILE=<notarytool keychain profile>
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv
.venv/bin/python -m pip install -e ".[package]"
cp -f "$(.venv/bin/python -m localchat.core.models.starter | tail -n 1)" resources/models/ 2>/dev/null || {
  mkdir -p resources/models; cp -f "$(.venv/bin/python -m localchat.core.models.starter | tail -n 1)" resources/models/; }
# icon: PNG -> iconset -> icns
iconset=build/localchat.iconset; rm -rf "$iconset"; mkdir -p "$iconset"
for s in 16 32 128 256 512; do
  sips -z $s $s resources/icons/localchat.png --out "$iconset/icon_${s}x${s}.png" >/dev/null
  sips -z $((s*2)) $((s*2)) resources/icons/localchat.png --out "$iconset/icon_${s}x${s}@2x.png" >/dev/null
done
iconutil -c icns "$iconset" -o packaging/macos/localchat.icns
.venv/bin/python -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/localchat.spec
QT_QPA_PLATFORM=offscreen LOCALCHAT_HOME="$(mktemp -d)" dist/localchat.app/Contents/MacOS/localchat --self-test
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --deep --force --options runtime --timestamp \
    --entitlements packaging/macos/entitlements.plist --sign "$CODESIGN_IDENTITY" dist/localchat.app
fi
VERSION=$(.venv/bin/python -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
hdiutil create -volname localchat -srcfolder dist/localchat.app -ov -format UDZO "dist/localchat-${VERSION}-macos.dmg"
if [ -n "${NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "dist/localchat-${VERSION}-macos.dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "dist/localchat-${VERSION}-macos.dmg"
fi
