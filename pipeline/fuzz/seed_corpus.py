#!/usr/bin/env python3
"""Seed corpus for the `parse_record` fuzz target: small PubMed XML documents cut from real files.

Usage: seed_corpus.py OUT_DIR FILE.xml[.gz]...

Each seed is one record (PubmedArticle, PubmedBookArticle, DeleteCitation or legacy MedlineCitation)
under its file's root element, at most 48 KB; some are gzipped (the parser detects gzip by its magic
bytes). The target reads the first byte of an input as its buffer size, so every seed starts with one.
"""
import gzip
import hashlib
import os
import re
import sys

MAX_BYTES = 48 * 1024
MAX_SEEDS = 400
RECORD = re.compile(
    rb"<(PubmedArticle|PubmedBookArticle|DeleteCitation|MedlineCitation)[\s>].*?</\1>", re.S
)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = []
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        root = b"MedlineCitationSet" if b"<MedlineCitationSet" in data[:4096] else b"PubmedArticleSet"
        for m in RECORD.finditer(data):
            rec = m.group(0)
            if len(rec) > MAX_BYTES:
                continue
            seeds.append(b"<?xml version=\"1.0\"?>\n<%s>\n%s\n</%s>\n" % (root, rec, root))
    # A spread of records from every file, not the first MAX_SEEDS of the first one.
    step = max(1, len(seeds) // MAX_SEEDS)
    written = 0
    for i, doc in enumerate(seeds[::step][:MAX_SEEDS]):
        if i % 5 == 4:
            doc = gzip.compress(doc, mtime=0)
        doc = bytes([i % 64]) + doc
        name = hashlib.sha1(doc).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(doc)
        written += 1
    print(f"{written} seeds in {out} (from {len(seeds)} records)")


if __name__ == "__main__":
    main()
