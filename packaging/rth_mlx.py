"""PyInstaller runtime hook (macOS): load MLX's library by its path in mlx/lib/ before mlx.core.

libmlx finds its Metal kernels (mlx.metallib) next to the file it was loaded from (dladdr). The
bundle also has a top-level link to libmlx (what mlx.core's @rpath reference resolves to); loaded
through that path first, MLX would look for the metallib at the top level. The spec puts a link
there too; loading the real file first makes the lookup land in mlx/lib/ either way.
"""
import os
import sys

if sys.platform == "darwin":
    import ctypes
    _lib = os.path.join(getattr(sys, "_MEIPASS", ""), "mlx", "lib", "libmlx.dylib")
    if os.path.exists(_lib):
        try:
            ctypes.CDLL(os.path.realpath(_lib), mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass
