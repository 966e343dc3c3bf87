#!/usr/bin/env python3
"""Peer comparison: cwn against the tools users reach for today, on one workload.

Builds (once, cached in WORKDIR) 1 M mixed indicators as a MISP feed and a 10 M-row Zeek-like
conn+dns Parquet file with string addresses and names (both with `cwn gen`), then times:

  cwn       cwn match --preset zeek on the Parquet file (index load included)
  duckdb    the same semantics written as a DuckDB user would: an exact join for addresses, a
            range join for CIDRs, a suffix-expansion join for domains (indicator tables loaded
            from the ingested JSON lines inside the timed run, as cwn loads its index)
  grep      grep -F -f over the telemetry as TSV (substring semantics: false positives)
  rg        rg -F -f, same
  grepcidr  grepcidr -f CIDRs over the TSV (addresses and CIDRs only)

It checks that cwn and DuckDB report the same (row, field, indicator) set for address and
domain indicators, and writes a markdown table (time, peak memory, hits, ratio to cwn).

Run by hand (not in CI):  python3 benches/peers/run.py [--rows N] [--indicators N] [--workdir D]
Needs: a release build of cwn (cargo build --release), grep, rg, grepcidr, the duckdb Python
package (pip install duckdb pyarrow).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CWN = os.path.join(ROOT, "target", "release", "cwn")


def sh(cmd, **kw):
    print("+", " ".join(cmd) if isinstance(cmd, list) else cmd, file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


TIMEOUT = 600


def timed(cmd, stdout=subprocess.DEVNULL, shell=False):
    """Runs cmd under /usr/bin/time -v with a time limit; returns (seconds or None when it ran
    out of time, peak RSS MiB, stdout text or None)."""
    full = ["timeout", str(TIMEOUT), "/usr/bin/time", "-v"] + (["bash", "-c", cmd] if shell else cmd)
    t = time.perf_counter()
    p = subprocess.run(full, stdout=stdout, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if p.returncode == 124:
        return None, float("nan"), None
    if p.returncode not in (0, 1):  # grep exits 1 on no match
        sys.exit(f"{cmd} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    return secs, rss, p.stdout if stdout == subprocess.PIPE else None


def prepare(args):
    w = args.workdir
    os.makedirs(w, exist_ok=True)
    feed = os.path.join(w, "feed")
    snap = os.path.join(w, "set.cwnsnap")
    tele = os.path.join(w, "telemetry.parquet")
    if not os.path.exists(os.path.join(feed, "manifest.json")):
        sh([CWN, "gen", "indicators", "--count", str(args.indicators), "--seed", "1", "-o", feed])
    if not os.path.exists(snap):
        sh([CWN, "compile", feed, "-o", snap])
    inds = os.path.join(w, "indicators.jsonl")
    if not os.path.exists(inds):
        sh([CWN, "ingest", feed, "-o", inds])
    if not os.path.exists(tele):
        sh([CWN, "gen", "telemetry", "--preset", "zeek", "--rows", str(args.rows),
            "--hit-rate", str(args.hit_rate), "--index", snap, "--seed", "1", "-o", tele])
    # Pattern files and a TSV view of the telemetry for the line-oriented tools.
    pats = {k: os.path.join(w, f"{k}.txt") for k in ("ips", "cidrs", "domains", "all")}
    if not os.path.exists(pats["all"]):
        with open(inds) as f, open(pats["ips"], "w") as ips, open(pats["cidrs"], "w") as cidrs, \
                open(pats["domains"], "w") as doms, open(pats["all"], "w") as alls:
            for line in f:
                i = json.loads(line)
                k, v = i["kind"], i["value"]
                if k in ("ipv4", "ipv6"):
                    ips.write(v + "\n"); cidrs.write(v + "\n"); alls.write(v + "\n")
                elif k == "cidr":
                    cidrs.write(v + "\n")
                elif k in ("domain", "hostname"):
                    doms.write(v + "\n"); alls.write(v + "\n")
    tsv = os.path.join(w, "telemetry.tsv")
    if not os.path.exists(tsv):
        import duckdb
        duckdb.sql(f"COPY (SELECT * FROM read_parquet('{tele}')) TO '{tsv}' "
                   "(FORMAT csv, DELIMITER '\t', HEADER false)")
    return feed, snap, inds, tele, pats, tsv


DUCKDB_SCRIPT = r'''
import duckdb, sys
inds, tele, out = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute("SET threads TO 2")
# Indicators as ingested (one JSON object per line); validity bounds and port constraints kept,
# TLP:RED left out as cwn compile leaves it out unless --arm-red.
con.execute(f"""CREATE TABLE ind AS SELECT kind, value, port::INT AS port,
    valid_from::TIMESTAMPTZ AS vf, valid_until::TIMESTAMPTZ AS vu
    FROM read_json('{inds}', columns={{'kind':'VARCHAR','value':'VARCHAR','port':'INT','tlp':'VARCHAR',
                                       'valid_from':'VARCHAR','valid_until':'VARCHAR'}})
    WHERE tlp <> 'RED'""")
v4 = """(split_part({x},'.',1)::UBIGINT<<24) + (split_part({x},'.',2)::UBIGINT<<16)
        + (split_part({x},'.',3)::UBIGINT<<8) + split_part({x},'.',4)::UBIGINT"""
con.execute("CREATE TABLE ip AS SELECT * FROM ind WHERE kind IN ('ipv4','ipv6')")
con.execute(f"""CREATE TABLE cidr AS SELECT *, lo + (1::UBIGINT << (32 - bits)) - 1 AS hi FROM (
    SELECT *, split_part(value,'/',2)::INT AS bits, {v4.format(x="split_part(value,'/',1)")} AS lo
    FROM ind WHERE kind = 'cidr' AND value NOT LIKE '%:%')""")
con.execute("CREATE TABLE dom AS SELECT * FROM ind WHERE kind = 'domain'")
con.execute("CREATE TABLE host AS SELECT * FROM ind WHERE kind = 'hostname'")
# Each address with its paired port and the event time (now when the row has none).
con.execute(f"""CREATE TEMP TABLE t AS SELECT file_row_number AS row,
    "id.orig_h" AS orig, "id.orig_p" AS orig_p, "id.resp_h" AS resp, "id.resp_p" AS resp_p, query,
    coalesce(to_timestamp(ts), now()) AS evt
    FROM read_parquet('{tele}', file_row_number=true)""")
con.execute("""CREATE TEMP TABLE addr AS
    SELECT row, 'id.orig_h' AS field, orig AS v, orig_p AS p, evt FROM t WHERE orig IS NOT NULL
    UNION ALL SELECT row, 'id.resp_h', resp, resp_p, evt FROM t WHERE resp IS NOT NULL""")
# The range join runs over distinct addresses, then joins back: a range join over every row
# (20 M addresses) did not finish in 150 s here.
con.execute(f"""CREATE TEMP TABLE incidr AS SELECT d.v, cidr.value, cidr.port, cidr.vf, cidr.vu
    FROM (SELECT v, {v4.format(x="v")} AS n FROM (SELECT DISTINCT v FROM addr WHERE v NOT LIKE '%:%')) d
    JOIN cidr ON d.n BETWEEN cidr.lo AND cidr.hi""")
# Suffix expansion over distinct names, then joined back.
con.execute("""CREATE TEMP TABLE indom AS SELECT q, dom.value, dom.port, dom.vf, dom.vu FROM (
      SELECT q, unnest([array_to_string(list_slice(p, i, len(p)), '.') FOR i IN range(1, len(p) + 1)]) AS s
      FROM (SELECT q, string_split(lower(trim(q, '.')), '.') AS p FROM (SELECT DISTINCT query AS q FROM t WHERE query IS NOT NULL))
  ) JOIN dom ON s = dom.value""")
ok = "(i.vf IS NULL OR {at} >= i.vf) AND (i.vu IS NULL OR {at} < i.vu)"
q = f"""
  SELECT row, field, i.value AS indicator FROM addr a JOIN ip i ON a.v = i.value
    WHERE (i.port IS NULL OR i.port = a.p) AND {ok.format(at="a.evt")}
  UNION ALL
  SELECT row, field, i.value FROM addr a JOIN incidr i ON a.v = i.v
    WHERE (i.port IS NULL OR i.port = a.p) AND {ok.format(at="a.evt")}
  UNION ALL
  SELECT row, 'query', i.value FROM t JOIN indom i ON t.query = i.q
    WHERE i.port IS NULL AND {ok.format(at="t.evt")}
  UNION ALL
  SELECT row, 'query', i.value FROM t JOIN host i ON lower(trim(t.query, '.')) = i.value
    WHERE i.port IS NULL AND {ok.format(at="t.evt")}
"""
con.execute(f"COPY ({q}) TO '{out}' (FORMAT csv, HEADER false)")
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--indicators", type=int, default=1_000_000)
    ap.add_argument("--hit-rate", type=float, default=0.001)
    ap.add_argument("--workdir", default=os.path.join(ROOT, "target", "peers"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds allowed per tool")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = ap.parse_args()
    global TIMEOUT
    TIMEOUT = args.timeout
    if not os.path.exists(CWN):
        sys.exit("build first: cargo build --release")
    feed, snap, inds, tele, pats, tsv = prepare(args)
    w = args.workdir
    size = os.path.getsize(tele)
    rows = []

    hits = os.path.join(w, "cwn-hits.jsonl")
    secs, rss, _ = timed([CWN, "match", "--index", snap, "--preset", "zeek", tele, "-o", hits])
    cwn_set = set()
    cwn_hits = 0
    with open(hits) as f:
        for line in f:
            h = json.loads(line)
            cwn_hits += 1
            if h["field"] in ("id.orig_h", "id.resp_h", "query") and \
                    h["kind"] in ("ipv4", "ipv6", "cidr", "domain", "hostname") and \
                    not (h["kind"] == "cidr" and ":" in h["indicator"]):  # DuckDB: IPv4 CIDRs only
                cwn_set.add((int(h["row"]), h["field"], h["indicator"]))
    rows.append(("cwn match (2 threads)", secs, rss, cwn_hits, "exact (every covering CIDR, subdomains, validity)"))
    base = secs

    script = os.path.join(w, "duck.py")
    with open(script, "w") as f:
        f.write(DUCKDB_SCRIPT)
    dout = os.path.join(w, "duck-hits.csv")
    secs, rss, _ = timed([sys.executable, script, inds, tele, dout])
    duck_set = set()
    with open(dout if secs is not None else os.devnull) as f:
        for line in f:
            r, field, ind = line.rstrip("\n").split(",", 2)
            duck_set.add((int(r), field, ind))
    rows.append(("DuckDB (exact + range + suffix joins)", secs, rss, len(duck_set),
                 "exact, IPv4 CIDRs only; validity windows and port constraints as WHERE clauses"))

    for name, cmd in (
        ("grep -F -f", f"grep -F -f {pats['all']} {tsv} | wc -l"),
        ("rg -F -f", f"rg -F -f {pats['all']} {tsv} | wc -l"),
        ("grepcidr -f", f"grepcidr -f {pats['cidrs']} {tsv} | wc -l"),
    ):
        secs, rss, out = timed(cmd, stdout=subprocess.PIPE, shell=True)
        n = int(out.strip() or 0) if out is not None else None
        rows.append((name, secs, rss, n, "matching lines, substring semantics (over TSV)"))

    only_cwn = cwn_set - duck_set
    only_duck = duck_set - cwn_set
    with open(args.out, "w") as f:
        f.write(f"Workload: {args.rows:,} rows of Zeek-like conn+dns telemetry "
                f"({size / 1e6:.0f} MB Parquet), {args.indicators:,} generated indicators; "
                f"`python3 benches/peers/run.py` on {os.cpu_count()} cores.\n\n")
        f.write("| tool | time (s) | peak memory (MiB) | hits | semantics | time vs cwn |\n")
        f.write("|---|---:|---:|---:|---|---:|\n")
        for name, secs, rss, n, sem in rows:
            if secs is None:
                f.write(f"| {name} | > {TIMEOUT} (stopped) | – | – | {sem} | > {TIMEOUT / base:.0f}× |\n")
            else:
                f.write(f"| {name} | {secs:.2f} | {rss:.0f} | {n:,} | {sem} | {secs / base:.1f}× |\n")
        f.write(f"\ncwn throughput: {size / base / 1e9:.2f} GB/s of Parquet, {args.rows / base / 1e6:.1f} M rows/s.\n")
        f.write(f"Agreement on address and domain hits (row, field, indicator): "
                f"{len(cwn_set & duck_set):,} common, {len(only_cwn):,} only cwn, {len(only_duck):,} only DuckDB"
                " (IPv6 CIDR hits left out: the DuckDB script ranges over IPv4 only).\n")
    print(open(args.out).read())
    for label, s in (("only cwn", only_cwn), ("only duckdb", only_duck)):
        for x in sorted(s)[:5]:
            print(label, x, file=sys.stderr)


if __name__ == "__main__":
    main()
