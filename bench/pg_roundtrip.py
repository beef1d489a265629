"""One PostgreSQL round trip (a prepared SELECT 1) after idle pauses of several lengths.

A gateway read makes three round trips (token, the gate's facts, the audit append with its
flush barrier), with the servers idle between requests. On a virtual machine a round trip
after an idle pause costs several times one made back to back, since both the client and
the backend must be woken. This prints p50 and p90 per pause, over TCP and the Unix socket:

    .venv/bin/python bench/pg_roundtrip.py [--repeat 300] [--pauses 0,2,5,20]
"""

import argparse
import sys
import time
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

from orthanc import measure


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=300, help="round trips per pause")
    p.add_argument("--pauses", default="0,2,5,20", help="idle milliseconds before each")
    p.add_argument("--tcp", default="host=127.0.0.1 dbname=test user=postgres")
    p.add_argument("--unix", default="host=/var/run/postgresql dbname=test user=postgres")
    return p.parse_args()


def round_trips(dsn: str, *, pause_ms: float, repeat: int) -> list[float]:
    """Seconds per round trip, each after ``pause_ms`` of sleep."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 1", prepare=True)
        out = []
        for _ in range(repeat):
            if pause_ms:
                time.sleep(pause_ms / 1000)
            start = time.perf_counter()
            cursor.execute("SELECT 1", prepare=True)
            cursor.fetchone()
            out.append(time.perf_counter() - start)
        return out


def main() -> int:
    args = parse_args()
    pauses = [float(p) for p in args.pauses.split(",")]
    print(f"PostgreSQL round trips (prepared SELECT 1), load {measure.load_average()}")
    print(f"{'socket':<8}{'pause ms':>10}{'p50 us':>10}{'p90 us':>10}")
    for name, dsn in (("tcp", args.tcp), ("unix", args.unix)):
        for pause in pauses:
            times = round_trips(dsn, pause_ms=pause, repeat=args.repeat)
            p50, p90 = (measure.percentile(times, q) * 1e6 for q in (50, 90))
            print(f"{name:<8}{pause:>10g}{p50:>10.0f}{p90:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
