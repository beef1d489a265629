"""Worker processes of a parallel verification: plain psycopg, no Django set-up to wait for."""

from audit import chainwalk


def verify_range(job: dict) -> dict:
    """Verify seq lo..hi on a connection of the worker's own (a server-side cursor)."""
    import psycopg

    findings = chainwalk.Findings()
    with psycopg.connect(**job["params"]) as conn, conn.cursor(name="audit_verify") as cursor:
        cursor.itersize = chainwalk.CHUNK_SIZE
        cursor.execute(job["sql"], [job["lo"], job["hi"]])
        count, last_seq, last_hash, first_prev = chainwalk.walk(
            cursor, job["expected"], findings, start=job["lo"], start_prev=None
        )
    return {
        "events": count,
        "last_seq": last_seq,
        "last_hash": last_hash,
        "first_prev": first_prev,
        "problem_seq": findings.seq,
        "problem": findings.problem,
    }
