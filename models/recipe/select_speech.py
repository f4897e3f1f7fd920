#!/usr/bin/env python3
"""Writes the training manifest of hark's default model to stdout.

    select_speech.py CACHE/x train-manifest.tsv > CACHE/x/manifest.tsv

Keeps the rows of train-manifest.tsv whose package was fetched by fetch.sh (other
packages are kept for independent evaluation and are never used) and adds the `speech`
rows, chosen by the path rules of shared/data/sources.md. Speech files that the
manifest already lists under another class (laughter, screams) are left out.
"""
import csv
import os
import re
import sys

FETCHED = {
    "0ad-data", "ufoai-sound", "nexuiz-data", "openarena-data", "openarena-081-players",
    "openarena-085-data", "openarena-088-data", "minetest-data", "widelands-data",
    "torcs-data", "ktuberling-data", "hedgewars-data", "warzone2100-data",
    "megaglest-data", "naev-data", "endless-sky-data", "btanks-data", "lincity-ng-data",
    "oxygen-sounds", "deepin-sound-theme", "lomiri-sounds", "psi-plus-sounds",
}
AUDIO = re.compile(r"\.(ogg|wav)$", re.I)  # no Opus decoder in hark
HEDGEWARS_NOT_SPEECH = {
    "laugh", "nooo", "ow", "ooff", "ouch", "poisoncough", "poisonmoan", "hmm", "jump",
    "firepunch", "uh-oh", "oops", "kamikaze",
}
WZ_SPEECH_DIRS = ("memressp", "tutorial", "vtoltalk", "trnsppil", "coltive",
                  "proxmessages", "multi", "countdown")
MEGAGLEST_HUMANS = {
    "archer", "archmage", "axe_thrower", "battlemage", "cudgel", "guard", "horseman",
    "initiate", "princess", "shaman", "spearman", "stickfighter", "summoner", "swordman",
    "technician", "valkyrie", "warrior", "worker",
}


def walk(root, sub):
    base = os.path.join(root, sub)
    for d, _, files in os.walk(base):
        for f in sorted(files):
            if AUDIO.search(f):
                yield os.path.relpath(os.path.join(d, f), root)


def speech(x):
    """(pkg, relpath) of every speech file, by the rules of sources.md."""
    p = "ktuberling-data"
    for r in walk(os.path.join(x, p), "usr/share/ktuberling/sounds"):
        if r.count("/") == 5 and "laugh" not in os.path.basename(r).lower():
            yield p, r
    p = "hedgewars-data"
    for r in walk(os.path.join(x, p), "usr/share/games/hedgewars/Data/Sounds/voices"):
        stem = re.sub(r"\d+$", "", os.path.splitext(os.path.basename(r))[0]).lower()
        if stem not in HEDGEWARS_NOT_SPEECH:
            yield p, r
    p = "warzone2100-data"
    for d in WZ_SPEECH_DIRS:
        yield from ((p, r) for r in walk(os.path.join(x, p), f"audio/{d}"))
    for r in walk(os.path.join(x, p), "audio/taunts"):
        if not re.match(r"(haha|laugh)", os.path.basename(r).lower()):
            yield p, r
    p = "nexuiz-data"
    for d in ("sound/tutorial", "sound/announcer/male"):
        yield from ((p, r) for r in walk(os.path.join(x, p), d))
    for r in walk(os.path.join(x, p), "sound"):
        if "/coms/" in r:
            yield p, r
    p = "0ad-data"
    for r in walk(os.path.join(x, p), "audio/voice"):
        if "dog" not in r.lower():
            yield p, r
    p = "openarena-data"
    yield from ((p, r) for r in walk(os.path.join(x, p), "sound/voices"))
    p = "megaglest-data"
    for r in walk(os.path.join(x, p), "usr/share/games/megaglest/techs"):
        m = re.match(r"(.+?)_(ack|select)", os.path.basename(r))
        if m and m.group(1) in MEGAGLEST_HUMANS:
            yield p, r


def main():
    x, manifest = sys.argv[1], sys.argv[2]
    rows = []
    listed = set()
    with open(manifest, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["pkg"] not in FETCHED or not AUDIO.search(r["relpath"]):
                continue
            if not os.path.exists(os.path.join(x, r["pkg"], r["relpath"])):
                sys.exit(f"select_speech.py: {r['pkg']}/{r['relpath']} is listed but missing; run fetch.sh again")
            rows.append((r["class"], r["pkg"], r["relpath"]))
            listed.add((r["pkg"], r["relpath"]))
    seen = set()
    for pkg, rel in speech(x):
        if (pkg, rel) in listed or (pkg, rel) in seen:
            continue
        seen.add((pkg, rel))
        rows.append(("speech", pkg, rel))
    out = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    out.writerow(["class", "pkg", "relpath"])
    out.writerows(rows)


if __name__ == "__main__":
    main()
