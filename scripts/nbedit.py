"""Edit one cell of a notebook in nbs/ safely while others edit other cells.

    python scripts/nbedit.py get nbs/11_profiles.ipynb "# profile: tsipras" > cell.py
    python scripts/nbedit.py set nbs/11_profiles.ipynb "# profile: tsipras" < cell.py

A cell is found by the first line of its source (after nbdev directive lines).
`set` appends a new code cell when no cell has that marker. The file is locked
(fcntl) for the read-modify-write, and written atomically.
"""
import fcntl, hashlib, json, os, sys, tempfile


def _first_line(src):
    for line in src.splitlines():
        if not line.startswith("#|"):
            return line.strip()
    return ""


def main(argv):
    op, path, marker = argv[1], argv[2], argv[3].strip()
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        nb = json.load(open(path))
        cells = [c for c in nb["cells"] if _first_line("".join(c["source"])) == marker]
        if op == "get":
            if not cells:
                sys.exit(f"no cell starting with {marker!r} in {path}")
            sys.stdout.write("".join(cells[0]["source"]))
            return
        src = sys.stdin.read().rstrip("\n")
        if cells:
            cells[0]["source"] = src
        else:
            cid = hashlib.sha1(marker.encode()).hexdigest()[:8]  # stable: exports stay reproducible
            nb["cells"].append({"cell_type": "code", "execution_count": None, "id": cid, "metadata": {},
                                "outputs": [], "source": src})
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")
        with os.fdopen(fd, "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    os.remove(path + ".lock")


if __name__ == "__main__":
    main(sys.argv)
