"""Edit one cell of a notebook in nbs/ safely while others edit other cells of the same notebook.

    python scripts/nbedit.py get     nbs/11_profiles.ipynb "# profile: tsipras" > cell.py
    python scripts/nbedit.py set     nbs/11_profiles.ipynb "# profile: tsipras" < cell.py
    python scripts/nbedit.py replace nbs/01_tsipras.ipynb "MARKER" OLD_FILE NEW_FILE
    python scripts/nbedit.py insert  nbs/01_tsipras.ipynb "MARKER" code|markdown < new_cell.txt
    python scripts/nbedit.py list    nbs/01_tsipras.ipynb

A cell is found by the first line of its source (after nbdev directive lines); `list` prints each
cell's index, type and marker. `set` replaces the cell's source and appends a new code cell when no
cell has that marker. `replace` substitutes the text in OLD_FILE (which must occur exactly once in
the cell) by the text in NEW_FILE: use it to change part of a cell that others may also edit.
`insert` adds a new cell right after the marked cell. Every write happens under an fcntl lock on
the notebook (`<notebook>.lock`, left in place and ignored by git: deleting a lock file another
process waits on would break the lock), as one read-modify-write, and is atomic (temporary file +
rename).
"""
import fcntl, hashlib, json, os, sys, tempfile


def _first_line(src):
    for line in src.splitlines():
        if not line.startswith("#|"):
            return line.strip()
    return ""


def _find(nb, marker):
    return [i for i, c in enumerate(nb["cells"]) if _first_line("".join(c["source"])) == marker]


def _write(nb, path):
    for c in nb["cells"]:                     # sources as lists of lines, as Jupyter and nbdev write them
        if isinstance(c["source"], str):
            c["source"] = c["source"].splitlines(keepends=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


def _new_cell(kind, src, marker):
    cid = hashlib.sha1((marker + src[:200]).encode()).hexdigest()[:8]  # stable: exports stay reproducible
    if kind == "markdown":
        return {"cell_type": "markdown", "id": cid, "metadata": {}, "source": src}
    return {"cell_type": "code", "execution_count": None, "id": cid, "metadata": {}, "outputs": [], "source": src}


def main(argv):
    op, path = argv[1], argv[2]
    marker = argv[3].strip() if len(argv) > 3 else ""
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        nb = json.load(open(path))
        hits = _find(nb, marker)
        if op == "list":
            for i, c in enumerate(nb["cells"]):
                print(i, c["cell_type"][:4], _first_line("".join(c["source"]))[:100])
            return
        if op in ("get", "replace", "insert") and not hits:
            sys.exit(f"no cell starting with {marker!r} in {path}")
        if op == "get":
            sys.stdout.write("".join(nb["cells"][hits[0]]["source"]))
            return
        if op == "set":
            src = sys.stdin.read().rstrip("\n")
            if hits:
                nb["cells"][hits[0]]["source"] = src
            else:
                nb["cells"].append(_new_cell("code", src, marker))
        elif op == "replace":
            old, new = open(argv[4]).read(), open(argv[5]).read()
            cell = nb["cells"][hits[0]]
            src = "".join(cell["source"])
            if src.count(old) != 1:
                sys.exit(f"the old text occurs {src.count(old)} times in the cell {marker!r}; it must occur once")
            cell["source"] = src.replace(old, new)
        elif op == "insert":
            kind = argv[4] if len(argv) > 4 else "code"
            if kind not in ("code", "markdown"):
                sys.exit(f"cell type must be code or markdown, not {kind!r}")
            src = sys.stdin.read().rstrip("\n")
            nb["cells"].insert(hits[0] + 1, _new_cell(kind, src, marker))
        else:
            sys.exit(f"unknown operation {op!r}; use get, set, replace, insert or list")
        _write(nb, path)


if __name__ == "__main__":
    main(sys.argv)
