"""PyInstaller entry point: the same executable is the app, the CLI and (with --worker) the inference worker."""

from localchat.app import main

if __name__ == "__main__":
    raise SystemExit(main())
