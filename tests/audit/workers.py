"""Run in child processes by the concurrency test: append events as fast as possible."""

import sys

import django


def main(worker: int, count: int) -> None:
    django.setup()
    from audit.events import Event
    from audit.services import append

    for n in range(count):
        append(Event(action="study.search", outcome="permit", request_id=f"w{worker}-{n}"))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
