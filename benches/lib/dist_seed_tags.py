#!/usr/bin/env python3
"""Give a repository of CNCF Distribution 2.x (filesystem storage) more tags, fast.

    dist_seed_tags.py ROOTDIRECTORY REPO FROM_TAG COUNT

Copies tag FROM_TAG (which must exist: push it through the API first) to the tags
t000000 … t<COUNT-1> (the names `berth bench` uses; existing ones are left alone), by
writing the same two link files per tag that Distribution's own tag PUT writes:

    docker/registry/v2/repositories/REPO/_manifests/tags/TAG/current/link
    docker/registry/v2/repositories/REPO/_manifests/tags/TAG/index/sha256/HEX/link

Through the API, Distribution takes about 15 ms per tag on a 2-core machine
(100,000 tags: 25 minutes); this takes seconds. Run it while the registry is up or
down: Distribution keeps no tag state in memory. Prints the number of tags written.
"""
import os
import sys


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    root, repo, src, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tags = os.path.join(root, "docker/registry/v2/repositories", repo, "_manifests/tags")
    try:
        with open(os.path.join(tags, src, "current/link")) as f:
            digest = f.read().strip()
    except OSError as e:
        print(f"dist_seed_tags: tag {src} of {repo} not found under {root}: {e}", file=sys.stderr)
        sys.exit(1)
    alg, _, hexpart = digest.partition(":")
    if not hexpart:
        print(f"dist_seed_tags: bad link content {digest!r}", file=sys.stderr)
        sys.exit(1)
    written = 0
    for i in range(count):
        tag = f"t{i:06d}"
        base = os.path.join(tags, tag)
        cur = os.path.join(base, "current")
        if os.path.exists(os.path.join(cur, "link")):
            continue
        idx = os.path.join(base, "index", alg, hexpart)
        os.makedirs(cur, exist_ok=True)
        os.makedirs(idx, exist_ok=True)
        for d in (cur, idx):
            with open(os.path.join(d, "link"), "w") as f:
                f.write(digest)
        written += 1
    print(written)


if __name__ == "__main__":
    main()
