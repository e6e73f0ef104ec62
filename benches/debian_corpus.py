"""Labelled corpus from Debian package descriptions: section<TAB>description, split 80/10/10.

apt-cache dumpavail | python3 debian_corpus.py OUTDIR   (after apt-get update)
Sections that are packaging roles rather than topics (libs, libdevel, doc, debug, oldlibs,
metapackages, tasks, introspection) are left out, and so are sections with fewer than 100
packages. Text: the short description and the first paragraph of the long one, lowercased,
at most 60 words. The split is seeded (random.Random(0)).
"""
import random, re, sys, collections, os
SKIP = {"libs", "libdevel", "doc", "debug", "oldlibs", "metapackages", "tasks", "introspection"}
out = sys.argv[1]
recs, cur, desc = [], {}, None
def flush():
    if cur.get("Section") and cur.get("desc"):
        recs.append((cur["Section"].split("/")[-1], cur["desc"]))
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        flush(); cur = {}; desc = None; continue
    if line.startswith(" ") and desc is not None:
        if line.strip() == ".":
            desc = None  # first paragraph only
        else:
            cur["desc"] += " " + line.strip()
        continue
    desc = None
    k, _, v = line.partition(":")
    if k == "Section": cur["Section"] = v.strip()
    elif k == "Description": cur["desc"] = v.strip(); desc = True
flush()
seen, rows = set(), []
for sec, d in recs:
    t = " ".join(re.findall(r"[a-z0-9]+(?:[-'.][a-z0-9]+)*|[^\sa-z0-9]", d.lower())[:60])
    if sec in SKIP or (sec, t) in seen: continue
    seen.add((sec, t)); rows.append((sec, t))
counts = collections.Counter(s for s, _ in rows)
rows = [r for r in rows if counts[r[0]] >= 100]
random.Random(0).shuffle(rows)
n = len(rows); a, b = int(.8 * n), int(.9 * n)
os.makedirs(out, exist_ok=True)
for name, part in (("train", rows[:a]), ("valid", rows[a:b]), ("test", rows[b:])):
    with open(os.path.join(out, name + ".tsv"), "w") as f:
        for s, t in part: f.write(f"{s}\t{t}\n")
print(n, "entries,", len(set(s for s, _ in rows)), "labels", file=sys.stderr)
