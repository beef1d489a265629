"""Summarise a py-spy raw profile (--format raw): pyspy_summary.py FILE [--top N]."""

import argparse
import collections
import re
from pathlib import Path

# Waiting, not working: the arbiter, selectors, and gthread's idle pool threads.
IDLE = re.compile(
    r"SyncWorker\.wait|Arbiter\.|\(selectors\.py|wait \(threading|select \("
    r"|_worker \(concurrent/futures/"
)
PROJECT = re.compile(r"\((studies|consent|audit|anim_gateway)/")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    for line in Path(args.file).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if IDLE.search(frames[-1]):
            continue
        n = int(count)
        total += n
        leaf[frames[-1]] += n
        for frame in set(frames):
            if PROJECT.search(frame):
                inclusive[frame] += n
    print(f"{total} busy samples")
    print("-- inclusive, project frames --")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")
    print("-- self (leaf) --")
    for frame, n in leaf.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
