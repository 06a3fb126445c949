"""RACLATE Tuner engine: models, data, losses, trainer, metrics and CLI. Imports no Qt."""
from engine import backend  # noqa: F401  (must run before anything imports mlx.core)

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy so that `import engine` stays cheap (the CLI's --help, the GUI's start-up).
    if name == "load_model":
        from engine.models import load_model
        return load_model
    if name == "encode":
        from engine.inference import encode
        return encode
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = ["load_model", "encode", "__version__"]
