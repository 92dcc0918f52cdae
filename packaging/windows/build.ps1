# Build localchat for Windows: onedir with PyInstaller, a self-test of the frozen app, then a per-user installer
# with Inno Setup (iscc on PATH, e.g. `choco install innosetup`). Run from any folder:
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
# CUDA build: set $env:CMAKE_ARGS="-DGGML_CUDA=on" (CUDA toolkit installed, CUDA_PATH set) before this script, and
# $env:LOCALCHAT_CUDA="1": the CUDA runtime DLLs llama.cpp links (cudart64_12, cublas64_12, cublasLt64_12) are copied
# next to ggml-cuda.dll. The NVIDIA driver (nvcuda.dll) is never bundled.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")
$py = ".\.venv\Scripts\python.exe"
if (-not (Test-Path $py)) { python -m venv .venv }
& $py -m pip install --upgrade pip
& $py -m pip install -e ".[package]" pillow
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }

# the starter model ships inside the app
$starter = (& $py -m localchat.core.models.starter | Select-Object -Last 1)
New-Item -ItemType Directory -Force resources\models | Out-Null
Copy-Item $starter resources\models\
# the .exe and installer icon, from the pre-rendered PNGs
& $py -c "from PIL import Image; Image.open('resources/icons/localchat-256.png').save('resources/icons/localchat.ico', sizes=[(16,16),(24,24),(32,32),(48,48),(64,64),(128,128),(256,256)])"

& $py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\localchat.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
$lib = "dist\localchat\_internal\llama_cpp\lib"
if (-not (Test-Path "$lib\llama.dll")) { throw "llama.dll missing from the build" }
if ($env:LOCALCHAT_CUDA -eq "1") {
  foreach ($dll in "cudart64_12.dll", "cublas64_12.dll", "cublasLt64_12.dll") {
    Copy-Item (Join-Path $env:CUDA_PATH "bin\$dll") $lib
  }
}

# smoke test: fresh home, empty machine cache (the bundled starter must be used), no display
$tmp = Join-Path $env:TEMP ("localchat-selftest-" + [guid]::NewGuid())
$env:QT_QPA_PLATFORM = "offscreen"
$env:LOCALCHAT_HOME = "$tmp\home"
$env:LOCALCHAT_MACHINE_CACHE = "$tmp\machine-cache"
$env:HF_HUB_OFFLINE = "1"
.\dist\localchat\localchat-cli.exe --self-test | Set-Content dist\self-test.json
if ($LASTEXITCODE -ne 0) { throw "self-test failed" }
Get-Content dist\self-test.json
Remove-Item Env:QT_QPA_PLATFORM, Env:LOCALCHAT_HOME, Env:LOCALCHAT_MACHINE_CACHE, Env:HF_HUB_OFFLINE
Remove-Item -Recurse -Force $tmp

$version = (& $py -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
iscc /DAppVersion=$version packaging\windows\localchat.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
