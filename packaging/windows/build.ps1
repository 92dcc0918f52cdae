# Build localchat for Windows: onedir with PyInstaller, then an installer with Inno Setup (iscc on PATH).
# GPU: set $env:CMAKE_ARGS="-DGGML_CUDA=on" before installing llama-cpp-python (CUDA toolkit required) and keep
# cudart64_*.dll, cublas64_*.dll and cublasLt64_*.dll next to llama.dll (PyInstaller collects them from llama_cpp\lib
# when the CUDA build put them there; otherwise copy them from %CUDA_PATH%\bin into dist\localchat\_internal\llama_cpp\lib).
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")
python -m venv .venv
.\.venv\Scripts\python -m pip install --upgrade pip
.\.venv\Scripts\python -m pip install -e ".[package]" pillow
$starter = (.\.venv\Scripts\python -m localchat.core.models.starter | Select-Object -Last 1)
New-Item -ItemType Directory -Force resources\models | Out-Null
Copy-Item $starter resources\models\
.\.venv\Scripts\python -c "from PIL import Image; Image.open('resources/icons/localchat.png').save('resources/icons/localchat.ico', sizes=[(16,16),(32,32),(48,48),(256,256)])"
.\.venv\Scripts\python -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\localchat.spec
$env:QT_QPA_PLATFORM = "offscreen"
$env:LOCALCHAT_HOME = Join-Path $env:TEMP "localchat-selftest"
.\dist\localchat\localchat.exe --self-test
if ($LASTEXITCODE -ne 0) { throw "self-test failed" }
$version = (.\.venv\Scripts\python -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
iscc /DAppVersion=$version packaging\windows\localchat.iss
