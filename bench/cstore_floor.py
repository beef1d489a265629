"""C-STORE floor: Orthanc, a bare pynetdicom acceptor (no storage) and the gateway's listener.

bench_vs_orthanc.py's C-STORE row put the gateway's listener at about half Orthanc's rate
while it ran on pynetdicom's acceptor (until 5b485e9; it now has its own, studies.dimse).
This script sends the same workload (``--concurrency`` client threads, one association per
study of two instances, pydicom's test files cloned with new UIDs) to, in turn:

1. Orthanc (as cstore_phases.py starts it);
2. a pynetdicom acceptor in its own processes, configured as the listener's AE was (no PDU
   limit, unrestricted storage, chunked reception to a file, handler logging off,
   TCP_NODELAY, Verification) and sharing its port as the listener does (pre-fork), whose
   C-STORE handler either returns Success at once ("noop") or first parses the received
   file's header with pydicom ("parse");
3. the gateway's listener (bench/orthanc/listener.py, as cstore_phases.py starts it);

and prints instances/s, the ratio to Orthanc, the median association time, the servers' CPU
per instance and the client's CPU use, so as to show what pynetdicom alone allows:

    .venv/bin/python bench/cstore_floor.py [--instances 1000] [--concurrency 2] [--processes N]
        [--poll-ms 0.1]

``--poll-ms`` shortens the bare acceptor's idle poll (pynetdicom's DUL sleeps 1 ms between
looks at its socket), to show how much of the floor is that polling; the listener is left
as it is.

Same set-up as cstore_phases.py (PostgreSQL database `bench_dicom` recreated, Orthanc from
Debian's packages on its own temporary storage). The acceptor runs as many processes as the
listener (BENCH_LISTENER_PROCESSES, else the CPU count) unless --processes says otherwise.
"""

import argparse
import datetime
import gc
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from orthanc import clients, corpus, measure, orthanc_server
from orthanc import gateway as gw

ORTHANC = {"port": 4343, "calling": "BENCH_SCU", "called": "ORTHANC"}
ACCEPTOR = {"port": 11144, "calling": "CHL_PACS", "called": "ANIM_GATEWAY"}
GATEWAY = {"port": 11143, "calling": "CHL_PACS", "called": "ANIM_GATEWAY"}
VARIANTS = ("noop", "parse")
SUCCESS = 0x0000


def default_processes() -> int:
    """The listener's process count under the bench (bench/orthanc/listener.py)."""
    return int(os.environ.get("BENCH_LISTENER_PROCESSES") or os.cpu_count() or 1)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=1000, help="instances sent to each server")
    p.add_argument("--concurrency", type=int, default=2, help="client threads")
    p.add_argument("--processes", type=int, default=default_processes(), help="acceptor's")
    p.add_argument("--warm", type=int, default=4, help="unmeasured studies sent first")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--poll-ms",
        type=float,
        help="the bare acceptor's DUL reactor polls its socket every POLL_MS when idle "
        "(pynetdicom's _run_loop_delay; default pynetdicom's own, 1 ms)",
    )
    p.add_argument("--acceptor", choices=VARIANTS, help=argparse.SUPPRESS)  # the subprocess
    return p.parse_args()


# --- The bare acceptor (run as a subprocess: python cstore_floor.py --acceptor VARIANT) ---


def handle_open(event, poll_seconds: float | None = None) -> None:
    """As studies.dicom_net.handle_open: TCP_NODELAY on the accepted socket."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if poll_seconds is not None:
        # The knob pynetdicom's maintainers point to (pydicom/pynetdicom#650): a shorter
        # sleep answers sooner and wakes the thread more often while the peer is silent.
        event.assoc.dul._run_loop_delay = poll_seconds


def handle_echo(event) -> int:
    return SUCCESS


def store_noop(event) -> int:
    return SUCCESS


def store_parse(event) -> int:
    from pydicom import dcmread

    dcmread(event.dataset_path, stop_before_pixels=True)
    return SUCCESS


def acceptor_handlers(variant: str, poll_seconds: float | None) -> list:
    from pynetdicom import evt

    store = {"noop": store_noop, "parse": store_parse}[variant]
    return [
        (evt.EVT_CONN_OPEN, handle_open, [poll_seconds]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, store),
    ]


def acceptor_ae():
    """pynetdicom's AE as the listener configured it until 5b485e9 (studies.dicom_net.make_ae,
    since replaced by studies.dimse), without its database-backed titles."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config
    from pynetdicom.sop_class import Verification

    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title=ACCEPTOR["called"])
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    ae.maximum_pdu_size = 0
    return ae


def inherited_socket_server():
    """The listener's InheritedSocketServer until 5b485e9, less its supervision: a
    pynetdicom association server that accepts on a listening socket its parent bound."""
    from pynetdicom.transport import AssociationServer

    class InheritedSocketServer(AssociationServer):
        def __init__(self, *args, listening: socket.socket, **kwargs) -> None:
            self.listening = listening
            super().__init__(*args, **kwargs)

        def server_bind(self) -> None:
            self.socket.close()
            self.socket = self.listening
            self.server_address = self.socket.getsockname()

        def server_activate(self) -> None:
            pass

        def server_close(self) -> None:
            self.socket.close()

    return InheritedSocketServer


def acceptor_child(listening: socket.socket, variant: str, poll_seconds: float | None) -> None:
    """One forked acceptor process, as the listener's children are (the default SIGTERM
    ends it)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    server = acceptor_ae().make_server(
        listening.getsockname(),
        evt_handlers=acceptor_handlers(variant, poll_seconds),
        server_class=inherited_socket_server(),
        listening=listening,
    )
    gc.freeze()
    server.serve_forever(poll_interval=0.2)


def fork(target: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 1
        try:
            target()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def serve_acceptor(variant: str, port: int, processes: int, poll_seconds: float | None) -> None:
    """As the listener: one process with processes == 1, else a parent that binds a
    non-blocking socket and forks children accepting on it; until SIGTERM."""
    if processes == 1:
        ae = acceptor_ae()
        handlers = acceptor_handlers(variant, poll_seconds)
        ae.start_server(("127.0.0.1", port), block=True, evt_handlers=handlers)
        return
    listening = socket.create_server(("127.0.0.1", port), backlog=128)
    listening.setblocking(False)
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    children = [
        fork(lambda: acceptor_child(listening, variant, poll_seconds)) for _ in range(processes)
    ]
    signal.sigwait(stop)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@dataclass
class Acceptor:
    """The bare acceptor's subprocess, for one variant."""

    variant: str
    processes: int
    poll_ms: float | None = None
    port: int = ACCEPTOR["port"]
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, log: Path, timeout: float = 30) -> None:
        args = [sys.executable, __file__, "--acceptor", self.variant]
        args += ["--processes", str(self.processes)]
        if self.poll_ms is not None:
            args += ["--poll-ms", str(self.poll_ms)]
        out = log.open("wb")
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not gw._port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the acceptor did not start; see {log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


# --- Measuring ---


@dataclass
class Result:
    name: str
    sent: int
    stored: int
    elapsed: float
    association_ms: float
    server_cpu: float  # seconds
    client_cpu: float  # seconds
    load: str = field(default_factory=measure.load_average)

    @property
    def rate(self) -> float:
        return self.stored / self.elapsed


def tree_cpu(pid: int) -> float:
    """User and system CPU seconds of a process and its descendants (psutil)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_parallel(fn: Callable, jobs: list, concurrency: int) -> tuple[float, list]:
    """As bench_vs_orthanc._run_parallel."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(fn, jobs))
    return time.perf_counter() - start, results


def send_all(jobs: list, target: dict, concurrency: int) -> tuple[float, list]:
    """Each job (a study's files) over its own association; (seconds, [(stored, failed, s)])."""

    def send(files: list) -> tuple[int, int, float]:
        start = time.perf_counter()
        stored, failed = clients.cstore_study(files, host="127.0.0.1", **target)
        return stored, failed, time.perf_counter() - start

    return run_parallel(send, jobs, concurrency)


def measure_server(name: str, pid: int, target: dict, jobs: list, args) -> Result:
    send_all(jobs[: args.warm], target, args.concurrency)
    measured = jobs[args.warm :]
    server0, client0 = tree_cpu(pid), time.process_time()
    elapsed, results = send_all(measured, target, args.concurrency)
    server1, client1 = tree_cpu(pid), time.process_time()
    return Result(
        name=name,
        sent=sum(len(j) for j in measured),
        stored=sum(s for s, _, _ in results),
        elapsed=elapsed,
        association_ms=statistics.median(t for _, _, t in results) * 1000,
        server_cpu=server1 - server0,
        client_cpu=client1 - client0,
    )


# --- The run ---


def revision() -> str:
    """HEAD, and whether the work tree differed from it (as bench_vs_orthanc.py)."""
    run = {"cwd": BENCH.parent, "capture_output": True, "text": True, "check": False}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run)
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty.stdout.strip() else ''}"


def build_jobs(work: Path, args, patient_ids: list[str]) -> list:
    """Two-instance studies as (path, SOP class, syntax) lists: the warm-up's first."""
    with warnings.catch_warnings():  # pydicom on some templates' VR
        warnings.simplefilter("ignore")
        studies, _ = corpus.build_small(
            work / "corpus",
            instances=args.instances + 2 * args.warm,
            per_study=2,
            patient_ids=patient_ids,
        )
        return [[(i.path, *clients.read_meta(i.path)) for i in s.items] for s in studies]


def run_orthanc(work: Path, jobs: list, args) -> Result:
    plugin = orthanc_server.ensure_installed()
    server = orthanc_server.Orthanc(work / "orthanc", http_port=8142, dicom_port=ORTHANC["port"])
    server.start(plugin)
    try:
        return measure_server("Orthanc", server.pid, ORTHANC, jobs, args)
    finally:
        server.stop()


def run_acceptor(work: Path, variant: str, jobs: list, args) -> Result:
    acceptor = Acceptor(variant, args.processes, args.poll_ms)
    acceptor.start(work / "logs" / f"acceptor-{variant}.log")
    try:
        return measure_server(f"pynetdicom {variant}", acceptor.pid, ACCEPTOR, jobs, args)
    finally:
        acceptor.stop()


def run_gateway(work: Path, env: dict, jobs: list, args) -> Result:
    gateway = gw.Gateway(env, http_port=8143, dicom_port=GATEWAY["port"], workers=1)
    gateway.start(work / "logs")
    try:
        return measure_server("gateway listener", gateway.listener_pid, GATEWAY, jobs, args)
    finally:
        gateway.stop()


def print_report(results: list[Result], args, started: str, load: str) -> None:
    import pynetdicom

    print(f"C-STORE floor, {started}; load at start {load}")
    print(f"pynetdicom {pynetdicom.__version__}; {orthanc_server.version()}; code {revision()}")
    print(
        f"{args.instances} instances per server, 2 per association, {args.concurrency} client "
        f"threads (one process), {args.warm} studies of warm-up first; acceptor: "
        f"{acceptor_model(args.processes)}; its DUL polls every "
        f"{args.poll_ms if args.poll_ms is not None else 'pynetdicom default (1)'} ms when idle"
    )
    print("server CPU: the server's process tree (gateway: listener processes, not PostgreSQL)")
    head = f"{'server / variant':<20}{'inst/s':>9}{'x Orthanc':>11}{'assoc ms':>10}"
    print(head + f"{'srv CPU ms/inst':>17}{'client CPU':>12}{'stored':>11}  load")
    orthanc = results[0].rate
    for r in results:
        print(
            f"{r.name:<20}{r.rate:>9.1f}{r.rate / orthanc:>10.2f}x{r.association_ms:>10.1f}"
            f"{r.server_cpu * 1000 / max(r.stored, 1):>17.2f}"
            f"{r.client_cpu / r.elapsed:>11.0%} {r.stored:>5}/{r.sent:<5} {r.load}"
        )


def acceptor_model(processes: int) -> str:
    if processes == 1:
        return "1 process (AE.start_server, as the listener with --processes 1)"
    return (
        f"{processes} forked processes accepting on one inherited non-blocking socket "
        "(as studies/dicom_net.serve_processes; no SO_REUSEPORT)"
    )


def main() -> int:
    args = parse_args()
    if args.acceptor:
        poll_seconds = args.poll_ms / 1000 if args.poll_ms is not None else None
        serve_acceptor(args.acceptor, ACCEPTOR["port"], args.processes, poll_seconds)
        return 0
    started, load = datetime.datetime.now().isoformat(timespec="seconds"), measure.load_average()
    work = Path(tempfile.mkdtemp(prefix="cstore_floor_"))
    (work / "logs").mkdir()
    env = gw.environment(work / "gateway", http_port=8143, dicom_port=GATEWAY["port"], pg=args.pg)
    gw.recreate_database(args.pg)
    gw.setup_django(env)
    parties = gw.provision(10)
    jobs = build_jobs(work, args, parties["patient_ids"])
    clients.enable_tcp_nodelay()
    results = [run_orthanc(work, jobs, args)]
    results += [run_acceptor(work, variant, jobs, args) for variant in VARIANTS]
    results.append(run_gateway(work, env, jobs, args))
    print_report(results, args, started, load)
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
