"""Short term/definition data nobody on the team wrote, on every machine with Python: the standard library's
own documentation. Each public function, class and method of a fixed list of modules gives one pair
(its qualified name, e.g. ``str.lstrip`` or ``shutil.copytree``, and the first paragraph of its docstring,
e.g. "Recursively copy a directory tree and return the destination directory."); names that re-export the
same object count once, and so do repeated docstrings.

    pairs()        [{"text": name, "text_pair": summary, "module": top-level module}, …] in a fixed order
    labelled()     [{"text": summary, "label": module}, …] for the modules with the most rows (classification)

The rows depend on the Python version (3.11 here: 3,000+ pairs); the benchmarks print how many they use.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from collections import Counter

MODULES = """os os.path string re json collections itertools functools math statistics random datetime pathlib shutil
subprocess socket email.message email.utils email.header xml.etree.ElementTree xml.dom.minidom http.client http.server
http.cookies urllib.parse urllib.request asyncio unittest logging logging.handlers argparse csv sqlite3 decimal fractions
typing inspect ast dis tarfile zipfile gzip bz2 lzma hashlib hmac secrets ssl threading multiprocessing
concurrent.futures queue heapq bisect array struct codecs unicodedata textwrap difflib pprint enum dataclasses
contextlib abc copy pickle shelve glob fnmatch tempfile filecmp io time calendar locale gettext platform importlib
importlib.util pkgutil sysconfig traceback warnings weakref types operator numbers cmath tokenize keyword symtable pdb
profile pstats timeit trace doctest smtplib imaplib poplib ftplib mailbox mimetypes base64 binascii quopri html
html.parser xmlrpc.client ipaddress selectors signal configparser netrc plistlib uuid shlex cmd getpass sched
contextvars graphlib zoneinfo tracemalloc gc sys builtins""".split()


def _summary(obj) -> str | None:
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    text = " ".join(doc.strip().split("\n\n")[0].split())
    # Builtins often start with their signature ("lstrip(self, chars=None, /)"): not a definition.
    return text if len(text) >= 20 and "(" not in text.split(" ")[0] else None


def pairs() -> list[dict]:
    rows, seen_objects, seen_texts = [], set(), set()

    def add(obj, fallback_module: str) -> None:
        module = getattr(obj, "__module__", None) or fallback_module
        module = {"posix": "os", "_io": "io"}.get(module, module)
        name = f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"
        if name in seen_objects or module.startswith("_"):
            return
        seen_objects.add(name)
        text = _summary(obj)
        if text and text not in seen_texts:
            seen_texts.add(text)
            rows.append({"text": name.removeprefix("builtins."), "text_pair": text, "module": module.split(".")[0]})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:   # a module this Python lacks (e.g. built without ssl)
                continue
            for name, obj in sorted(vars(module).items()):
                if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                    continue
                add(obj, module_name)
                if inspect.isclass(obj):
                    for attr, member in sorted(vars(obj).items()):
                        if not attr.startswith("_") and (inspect.isfunction(member) or inspect.ismethoddescriptor(member)):
                            add(member, getattr(obj, "__module__", None) or module_name)
    return rows


def labelled(classes: int = 8) -> list[dict]:
    """Docstring summary → its module, for the ``classes`` modules with the most rows."""
    rows = pairs()
    top = {m for m, _ in Counter(r["module"] for r in rows).most_common(classes)}
    return [{"text": r["text_pair"], "label": r["module"]} for r in rows if r["module"] in top]


if __name__ == "__main__":
    rows = pairs()
    print(len(rows), "pairs;", Counter(r["label"] for r in labelled()).most_common())
    for r in rows[::max(1, len(rows) // 8)]:
        print(f"  {r['text']:<40} {r['text_pair'][:90]}")
