"""The app bundle's entry point (packaging/raclate.spec): the desktop app, or with `--train-child`
the engine CLI (the training child process that raclate_app/supervisor.py starts), without Qt."""
import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()   # a frozen app must not re-run itself for a spawned worker
    # The bundle has no torch by design; transformers would say so on every start.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if sys.argv[1:2] == ["--train-child"]:
        from engine.cli import main as cli_main   # `import engine` loads the fast BLAS first
        sys.exit(cli_main(sys.argv[2:]))
    from raclate_app.main import main
    sys.exit(main())
