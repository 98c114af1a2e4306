#!/usr/bin/env python3
"""Checks sidetrace's stderr in log_format json with Python's own JSON parser.

    check_log_lines.py STDERR_FILE [--expect-file FILE] [--require-logger NAME]...

Every line must be one JSON object with exactly the keys time (RFC 3339 UTC with milliseconds),
level (a --log-level name), logger, thread and msg (strings). --expect-file holds NUL-separated
UTF-8 strings, each of which must occur in some decoded msg (so escaping is checked after
decoding, not by matching escaped text). --require-logger NAME: at least one line from NAME.
Prints "ok N" (N lines) and exits 0, or prints what is wrong and exits 1.
"""
import json
import re
import sys

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"trace", "debug", "info", "warn", "error", "critical"}
KEYS = ["time", "level", "logger", "thread", "msg"]


def main(argv):
    path, expect_file, loggers = argv[1], None, []
    i = 2
    while i < len(argv):
        if argv[i] == "--expect-file":
            expect_file = argv[i + 1]
        elif argv[i] == "--require-logger":
            loggers.append(argv[i + 1])
        else:
            print("unknown argument %r" % argv[i])
            return 2
        i += 2
    data = open(path, "rb").read()
    if not data:
        print("no output at all")
        return 1
    if not data.endswith(b"\n"):
        print("last line not terminated")
        return 1
    problems, records = [], []
    for n, raw in enumerate(data.split(b"\n")[:-1], 1):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            problems.append("line %d: not JSON (%s): %r" % (n, e, raw[:200]))
            continue
        if not isinstance(rec, dict) or list(rec.keys()) != KEYS:
            problems.append("line %d: expected keys %s, got %r" % (n, KEYS, raw[:200]))
            continue
        if not all(isinstance(rec[k], str) for k in KEYS):
            problems.append("line %d: non-string field: %r" % (n, raw[:200]))
            continue
        if not TIME.match(rec["time"]):
            problems.append("line %d: bad time %r" % (n, rec["time"]))
        if rec["level"] not in LEVELS:
            problems.append("line %d: bad level %r" % (n, rec["level"]))
        records.append(rec)
    if expect_file:
        wanted = open(expect_file, "rb").read().split(b"\0")
        for w in (x.decode("utf-8") for x in wanted if x):
            if not any(w in r["msg"] for r in records):
                problems.append("no msg contains %r" % w)
    for name in loggers:
        if not any(r["logger"] == name for r in records):
            problems.append("no line from logger %r" % name)
    if problems:
        print("\n".join(problems))
        return 1
    print("ok %d" % len(records))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
