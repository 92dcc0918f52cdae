"""``python -m localchat``: kept import-light so a spawned worker never drags in Qt."""

from localchat.app import main

if __name__ == "__main__":
    raise SystemExit(main())
