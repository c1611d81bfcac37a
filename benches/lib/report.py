#!/usr/bin/env python3
"""Turn the raw JSON of one benches/compare.sh run into the markdown report.

    report.py RAW_DIR OUT.md

RAW_DIR holds (as written by compare.sh):
  meta.json                      machine, versions, parameters of the run
  ceiling-sha256.json            {"bytes_per_sec", "block_bytes", "sha_ni", "command"}
  ceiling-sha256-r<N>.json       the same, measured right before round N's push
  ceiling-disk-{before,after}.json  {"bytes_per_sec", "bytes", "secs", "command"}: dd direct write
  idle-{berth,dist}.json         {"vmrss_kb", "vmhwm_kb"} after start-up
  after-{berth,dist}.json        the same after all scenarios
  <scenario>-<server>-r<N>.json  `berth bench --output json` of one run
  <scenario>-<server>-r<N>.proc.json   procwatch.py samples of the server during it
  curl-{berth,dist,nginx}-r<N>.json    {"url", "speeds_bytes_per_sec": [...]}
  bigpush-{berth,dist}.json (+ .proc.json)
  startup-<k>.json               `--scenario ready` output + t0_unix_ns, startup_ms
  harness-failures.json          list of strings, when the harness broke somewhere

Every figure is the median over the rounds (peaks of memory: the maximum). A missing
file becomes "n/a" (the part was not run or failed), never an exception.
"""
import json
import os
import re
import statistics
import sys

MiB = 1048576.0
SERVERS = ("berth", "dist")
NAMES = {"berth": "berth", "dist": "Distribution"}
# A scenario whose rounds differ by more than this factor (for one server) is called
# out under Caveats: its median says as much about the machine as about the server.
UNSTEADY = 2.0


def load(raw, name):
    try:
        with open(os.path.join(raw, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rounds(raw, scenario, server):
    """[(round, bench_json, proc_json_or_None)] for <scenario>-<server>-r<N>.json."""
    pat = re.compile(r"^%s-%s-r(\d+)\.json$" % (re.escape(scenario), server))
    out = []
    for fn in os.listdir(raw):
        m = pat.match(fn)
        if not m:
            continue
        b = load(raw, fn)
        if not isinstance(b, dict):
            continue
        out.append((int(m.group(1)), b, load(raw, fn[: -len(".json")] + ".proc.json")))
    return sorted(out, key=lambda t: t[0])


def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def dig(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def measured_cpu(bench, proc):
    """Server CPU seconds during the measured part of one run: the last
    `measured_secs` of the sampling window (which ends when `berth bench` exits), read
    off procwatch's CPU series by linear interpolation. Without a series (or when the
    window is longer than what was sampled) the whole call's CPU."""
    if not isinstance(proc, dict):
        return None
    whole = proc.get("cpu_secs")
    series = proc.get("cpu_series") or []
    secs = bench.get("measured_secs") if isinstance(bench, dict) else None
    tck = proc.get("clk_tck") or 100
    if not isinstance(secs, (int, float)) or len(series) < 2:
        return whole
    t_end, c_end = series[-1]
    t_start = t_end - secs
    if t_start <= series[0][0]:
        return whole
    c_start = series[0][1]
    for (t1, c1), (t2, c2) in zip(series, series[1:]):
        if t1 <= t_start <= t2:
            c_start = c1 + (c2 - c1) * ((t_start - t1) / (t2 - t1) if t2 > t1 else 0)
            break
    return max(0.0, (c_end - c_start) / tck)


# ---- formatting ----------------------------------------------------------------------
NA = "n/a"


def f_mibs(bps):
    if bps is None:
        return NA
    v = bps / MiB
    return f"{v:,.0f} MiB/s" if v >= 100 else f"{v:,.1f} MiB/s"


def f_rps(v):
    return NA if v is None else f"{v:,.0f} req/s"


def f_ms(v):
    if v is None:
        return NA
    return f"{v:,.1f} ms" if v >= 100 else f"{v:.2f} ms"


def f_mib(kb):
    return NA if kb is None else f"{kb / 1024.0:,.1f} MiB"


def f_secs(v):
    return NA if v is None else f"{v:.2f} s"


def f_us(v):
    return NA if v is None else f"{v:,.1f} µs"


def f_x(v):
    return NA if v is None else f"{v:.2f}×"


def f_pct(v):
    return NA if v is None else f"{v * 100:.0f}%"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---- goal checks ---------------------------------------------------------------------
class Check:
    """One target: value >= target ("ge") or value <= target ("le")."""

    def __init__(self, label, value, op, target, fmt):
        self.label, self.value, self.op, self.target, self.fmt = label, value, op, target, fmt

    def ok(self):
        if self.value is None:
            return None
        return self.value >= self.target if self.op == "ge" else self.value <= self.target

    def text(self):
        v, t = self.value, self.target
        if v is None:
            return f"{self.label}not measured"
        r = v / t if t else float("inf")
        if self.op == "ge":
            if v >= t:
                return f"{self.label}met, +{(r - 1) * 100:.0f}% margin"
            return f"{self.label}**NOT met**, {(1 - r) * 100:.0f}% short ({self.fmt(v)} < {self.fmt(t)})"
        if v <= t:
            return f"{self.label}met, {(1 - r) * 100:.0f}% under the limit"
        return f"{self.label}**NOT met**, {(r - 1) * 100:.0f}% over ({self.fmt(v)} > {self.fmt(t)})"


def verdict(checks):
    if not checks:
        return "— (reported)"
    return "; ".join(c.text() for c in checks)


# ---- the report ----------------------------------------------------------------------
def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    raw, out = sys.argv[1], sys.argv[2]
    meta = load(raw, "meta.json") or {}
    rows = []
    notes = []
    err_runs = []
    per_round = []  # (scenario label, round, berth text, dist text)
    flagged = set()  # (scenario, server) with failed requests in some round
    tool_notes = {}  # (scenario, server) -> the load generator's "note" (first round's)
    unsteady = []  # caveat lines for scenarios whose rounds disagree by more than UNSTEADY×

    def mark(scenario, server, text):
        return text + " †" if (scenario, server) in flagged else text

    def scen(scenario, key_fn, fmt):
        """Median of key_fn over rounds per server, plus per-round details."""
        res = {}
        by_round = {}
        for s in SERVERS:
            rs = rounds(raw, scenario, s)
            vals = []
            for rnd, b, _p in rs:
                v = key_fn(b)
                vals.append(v)
                by_round.setdefault(rnd, {})[s] = fmt(v) + (" †" if (b.get("errors") or 0) > 0 else "")
                if (b.get("errors") or 0) > 0:
                    err_runs.append((f"{scenario}-{s}-r{rnd}", b))
                    flagged.add((scenario, s))
                if b.get("note"):
                    tool_notes.setdefault((scenario, s), b["note"])
            res[s] = med(vals)
            nums = [v for v in vals if isinstance(v, (int, float)) and v > 0]
            if len(nums) >= 2 and max(nums) / min(nums) > UNSTEADY:
                unsteady.append(f"{scenario}, {NAMES[s]}: rounds range {fmt(min(nums))} to {fmt(max(nums))} "
                                f"({max(nums) / min(nums):.1f}×): more than {UNSTEADY:g}× apart, so the median "
                                "measures the machine as much as the server (see Per round; repeat after a pause)")
        for rnd in sorted(by_round):
            per_round.append((scenario, rnd, by_round[rnd].get("berth", NA), by_round[rnd].get("dist", NA)))
        return res

    def cpu(scenario):
        res = {}
        for s in SERVERS:
            res[s] = med([measured_cpu(b, p) for _r, b, p in rounds(raw, scenario, s)])
        return res

    def cpu_per_request(scenario):
        res = {}
        for s in SERVERS:
            vals = []
            for _r, b, p in rounds(raw, scenario, s):
                c, n = measured_cpu(b, p), b.get("requests")
                if isinstance(c, (int, float)) and n:
                    vals.append(c / n * 1e6)
            res[s] = med(vals)
        return res

    def tput(b):
        return b.get("throughput_bytes_per_sec")

    def rps(b):
        return b.get("requests_per_sec")

    def p99(b):
        return dig(b, "latency_ms", "p99")

    sha = load(raw, "ceiling-sha256.json") or {}
    sha_bps = sha.get("bytes_per_sec")
    disk = [(load(raw, f"ceiling-disk-{w}.json") or {}).get("bytes_per_sec") for w in ("before", "after")]
    disk_txt = ("; disk " + " → ".join(f_mibs(d) for d in disk if d)) if any(disk) else ""
    push_sz = meta.get("push_size", "?")
    chunk_sz = meta.get("chunk_size", "?")

    # 1. monolithic push
    p = scen("push", tput, f_mibs)
    r_d, r_c = ratio(p["berth"], p["dist"]), ratio(p["berth"], sha_bps)
    sha_txt = f"{f_mibs(sha_bps)} (SHA-256)"
    # The SHA-256 rate measured right before each round's push: the share of the
    # ceiling is the median of the rounds' shares (the machine's rate drifts).
    shares, round_sha = [], []
    for rnd, b, _p in rounds(raw, "push", "berth"):
        r_sha = (load(raw, f"ceiling-sha256-r{rnd}.json") or {}).get("bytes_per_sec")
        share = ratio(tput(b), r_sha)
        if share is not None:
            shares.append(share)
            round_sha.append(r_sha)
            per_round.append(("push, berth ÷ SHA-256 measured just before", rnd,
                              f"{f_pct(share)} (of {f_mibs(r_sha)})", ""))
    if shares:
        r_c = med(shares)
        if len(round_sha) == 1:
            sha_txt = f"{f_mibs(round_sha[0])} (SHA-256, measured just before the push)"
        else:
            sha_txt = (f"{f_mibs(med(round_sha))} (SHA-256, median of the rounds' "
                       f"{f_mibs(min(round_sha))}–{f_mibs(max(round_sha))})")
    rows.append([f"blob push, monolithic, {push_sz}", mark("push", "berth", f_mibs(p["berth"])),
                 mark("push", "dist", f_mibs(p["dist"])),
                 f"{sha_txt}{disk_txt}", f"{f_x(r_d)} Dist; {f_pct(r_c)} of SHA-256",
                 "≥ 4× Dist and ≥ 75% of SHA-256",
                 verdict([Check("vs Dist: ", r_d, "ge", 4.0, f_x), Check("vs SHA-256: ", r_c, "ge", 0.75, f_pct)])])
    # 2. chunked push
    p = scen("chunked", tput, f_mibs)
    r_d = ratio(p["berth"], p["dist"])
    rows.append([f"blob push, chunked ({chunk_sz} chunks), {push_sz}", mark("chunked", "berth", f_mibs(p["berth"])),
                 mark("chunked", "dist", f_mibs(p["dist"])), "",
                 f"{f_x(r_d)} Dist", "≥ 4× Dist", verdict([Check("", r_d, "ge", 4.0, f_x)])])
    # 3. pull, berth bench
    p = scen("pull", tput, f_mibs)
    r_d = ratio(p["berth"], p["dist"])
    rows.append([f"blob pull, {push_sz}, page cache warm (berth bench, 1 connection)",
                 mark("pull", "berth", f_mibs(p["berth"])), mark("pull", "dist", f_mibs(p["dist"])), "", f"{f_x(r_d)} Dist", "≥ 1.0× Dist", verdict([Check("", r_d, "ge", 1.0, f_x)])])
    # 4. pull, curl against all three
    curl = {}
    for t in ("berth", "dist", "nginx"):
        speeds = []
        for fn in sorted(os.listdir(raw)):
            if re.match(r"^curl-%s-r\d+\.json$" % t, fn):
                speeds += (load(raw, fn) or {}).get("speeds_bytes_per_sec") or []
        curl[t] = med([float(x) for x in speeds])
    r_n, r_d = ratio(curl["berth"], curl["nginx"]), ratio(curl["berth"], curl["dist"])
    rows.append([f"blob pull, {push_sz}, page cache warm (same client for all three: curl)", f_mibs(curl["berth"]),
                 f_mibs(curl["dist"]), f"{f_mibs(curl['nginx'])} (nginx, same file)",
                 f"{f_pct(r_n)} of nginx; {f_x(r_d)} Dist", "≥ 85% of nginx",
                 verdict([Check("", r_n, "ge", 0.85, f_pct)])])
    # 5-8. manifests
    conc = meta.get("manifest_conc", 50)
    for by in ("tag", "digest"):
        sc = f"manifest-{by}"
        q = scen(sc, rps, f_rps)
        lat = {s: med([p99(b) for _r, b, _p in rounds(raw, sc, s)]) for s in SERVERS}
        r_d = ratio(q["berth"], q["dist"])
        rows.append([f"manifest GET by {by}, {conc} connections: throughput", mark(sc, "berth", f_rps(q["berth"])),
                     mark(sc, "dist", f_rps(q["dist"])), "",
                     f"{f_x(r_d)} Dist", "≥ 10× Dist", verdict([Check("", r_d, "ge", 10.0, f_x)])])
        rows.append([f"manifest GET by {by}, {conc} connections: p99 latency", f_ms(lat["berth"]),
                     f_ms(lat["dist"]), "", f"{f_x(ratio(lat['berth'], lat['dist']))} Dist", "p99 ≤ 5 ms",
                     verdict([Check("", lat["berth"], "le", 5.0, f_ms)])])
    # 9. idle RSS
    idle = {s: dig(load(raw, f"idle-{s}.json"), "vmrss_kb") for s in SERVERS}
    rows.append(["server RSS, idle (after start-up and one request)", f_mib(idle["berth"]), f_mib(idle["dist"]), "",
                 f"{f_x(ratio(idle['berth'], idle['dist']))} Dist", "≤ 12 MB",
                 verdict([Check("", idle["berth"], "le", 12 * 1024, f_mib)])])
    # 10. RSS under the manifest load: the maximum over every manifest run
    peak, sampled, hwm = {}, {}, {}
    for s in SERVERS:
        ps = [p for sc in ("manifest-tag", "manifest-digest") for _r, _b, p in rounds(raw, sc, s) if p]
        peak[s] = max([p.get("rss_peak_kb", 0) for p in ps], default=None)
        sampled[s] = max([p.get("rss_sampled_peak_kb", 0) for p in ps], default=None)
        hwm[s] = max([p.get("hwm_kb", 0) for p in ps], default=None)

    def rss_cell(s):
        if peak[s] is None:
            return NA
        return f"{f_mib(peak[s])} (sampled VmRSS {f_mib(sampled[s])}, VmHWM {f_mib(hwm[s])})"

    r_d = ratio(peak["berth"], peak["dist"])
    rows.append(["server RSS under the manifest load (peak)", rss_cell("berth"), rss_cell("dist"), "",
                 f"{f_x(r_d)} Dist", "≤ 0.5× Dist", verdict([Check("", r_d, "le", 0.5, f_x)])])
    # 11. RSS growth during a big push
    grow = {}
    cells = {}
    for s in SERVERS:
        pp = load(raw, f"bigpush-{s}.proc.json")
        if pp:
            grow[s] = pp["rss_peak_kb"] - pp["rss_start_kb"]
            cells[s] = f"+{f_mib(grow[s])} ({f_mib(pp['rss_start_kb'])} → {f_mib(pp['rss_peak_kb'])})"
        else:
            grow[s], cells[s] = None, NA
        b = load(raw, f"bigpush-{s}.json")
        if b and (b.get("errors") or 0) > 0:
            err_runs.append((f"bigpush-{s}", b))
    big = meta.get("big_size", "?")
    rows.append([f"server RSS growth during one monolithic {big} push", cells["berth"], cells["dist"], "",
                 f"{f_x(ratio(grow['berth'], grow['dist']))} Dist" if (grow["dist"] or 0) >= 1024 else "",
                 "≤ 32 MB",
                 verdict([Check("", grow["berth"], "le", 32 * 1024, f_mib)])])
    # 12. start-up
    st = []
    for fn in sorted(os.listdir(raw)):
        if re.match(r"^startup-\d+\.json$", fn):
            v = (load(raw, fn) or {}).get("startup_ms")
            if isinstance(v, (int, float)):
                st.append(v)
    st_med = med(st)
    repos, tags_per = meta.get("startup_repos", "?"), meta.get("startup_tags", "?")
    total_tags = repos * tags_per if isinstance(repos, int) and isinstance(tags_per, int) else "?"
    st_cell = f_ms(st_med) + (f" (median of {len(st)}; {min(st):.1f}–{max(st):.1f})" if st else "")
    rows.append([f"start-up to first served request, {repos:,} repositories, {total_tags:,} tags"
                 if isinstance(total_tags, int) else "start-up to first served request",
                 st_cell, "not measured", "", "", "≤ 100 ms", verdict([Check("", st_med, "le", 100.0, f_ms)])])
    # 13. tags/list
    ntags, page = meta.get("tags_count", "?"), meta.get("tags_page", "?")
    tl = {s: med([p99(b) for _r, b, _p in rounds(raw, "tags", s)]) for s in SERVERS}
    tq = scen("tags", rps, f_rps)
    rows.append([f"tags/list?n={page} on a repository with {ntags:,} tags: p99 (1 connection)"
                 if isinstance(ntags, int) else "tags/list: p99",
                 mark("tags", "berth", f"{f_ms(tl['berth'])} ({f_rps(tq['berth'])})"),
                 mark("tags", "dist", f"{f_ms(tl['dist'])} ({f_rps(tq['dist'])}; ignores n: whole list)"), "",
                 f"{f_x(ratio(tq['berth'], tq['dist']))} Dist req/s", "p99 ≤ 20 ms",
                 verdict([Check("", tl["berth"], "le", 20.0, f_ms)])])
    # CPU
    for sc, label in (("push", f"monolithic push {push_sz}"), ("chunked", f"chunked push {push_sz}"),
                      ("pull", f"pull {push_sz}"), ("manifest-tag", "manifest GET by tag"),
                      ("manifest-digest", "manifest GET by digest"), ("tags", "tags/list")):
        c = cpu(sc)
        if c["berth"] is None and c["dist"] is None:
            continue
        rows.append([f"server CPU seconds, {label} (measured part)", f_secs(c["berth"]), f_secs(c["dist"]), "",
                     f"{f_x(ratio(c['berth'], c['dist']))} Dist", "(reported)", "—"])
    for by in ("tag", "digest"):
        c = cpu_per_request(f"manifest-{by}")
        if c["berth"] is None and c["dist"] is None:
            continue
        rows.append([f"server CPU per request, manifest GET by {by}", f_us(c["berth"]), f_us(c["dist"]), "",
                     f"{f_x(ratio(c['berth'], c['dist']))} Dist", "(reported)", "—"])
    after = {s: dig(load(raw, f"after-{s}.json"), "vmrss_kb") for s in SERVERS}
    if after["berth"] is not None or after["dist"] is not None:
        rows.append(["server RSS after every scenario", f_mib(after["berth"]), f_mib(after["dist"]), "",
                     f"{f_x(ratio(after['berth'], after['dist']))} Dist", "(reported)", "—"])

    # ---- write -------------------------------------------------------------------
    L = []
    mode = meta.get("mode", "?")
    L.append(f"# berth vs CNCF Distribution — {meta.get('date', '?')} ({mode} run)")
    L.append("")
    if mode == "smoke":
        L.append("**Smoke run**: tiny sizes and 1 s durations, only to prove the harness works; "
                 "the figures mean nothing.")
        L.append("")
    L.append("## Machine and versions")
    L.append("")
    L.append(f"- machine: {meta.get('nproc', '?')} cores, {meta.get('cpu_model', '?')} "
             f"(sha_ni: {meta.get('sha_ni', '?')}), {meta.get('mem_total', '?')} RAM, {meta.get('kernel', '?')}; "
             f"data of both servers and nginx's file on one {meta.get('fs', '?')} filesystem")
    le = (load(raw, "loadavg-end.json") or {}).get("loadavg", "?")
    L.append(f"- load average at start {meta.get('loadavg_start', '?')}, after the rounds {le}")
    L.append(f"- berth {meta.get('git_sha', '?')} ({meta.get('berth_version', '?')}, {meta.get('build', '?')} build, "
             f"{meta.get('rustc_version', '?')}); code layout: {meta.get('layout', '?')}")
    L.append(f"- Distribution: {meta.get('dist_version', '?')} (Debian package docker-registry), log level warn, "
             "filesystem storage, access log off")
    L.append(f"- {meta.get('nginx_version', '?')}; {meta.get('openssl_version', '?')}; {meta.get('curl_version', '?')}")
    L.append("")
    L.append("## Method")
    L.append("")
    L.append(f"- One machine, one run: both servers run side by side for the whole run; every scenario runs "
             f"{meta.get('rounds', '?')} round(s), alternating berth then Distribution (ABAB…); each figure is the "
             "median over the rounds (memory peaks: the maximum over the runs).")
    L.append("- Every push run starts after a `sync` (no dirty pages left from the run before).")
    L.append("- The load generator is `berth bench` (closed loop; setup not measured; warm-up excluded) and "
             "shares the machine's cores with the server under test. It reads blob bodies with the socket's "
             "receive low-water mark at 256 KiB (`SO_RCVLOWAT`, 1 for the last 256 KiB), so it wakes once per "
             "256 KiB, not once per loopback segment: a client that slept after every segment cost the server "
             "it pulled from ~30% of its CPU in wake-ups (crates/berth-bench/src/socket.rs).")
    L.append(f"- Pushes: {meta.get('push_iters', '?')} measured + {meta.get('push_warmup', '?')} warm-up "
             f"iteration(s) of {push_sz} per round; pull: {meta.get('pull_iters', '?')} GETs (+ 2 warm-up) on one "
             f"connection, every {meta.get('pull_verify', '?')}th body hashed by the client; "
             f"curl pulls: 1 warm-up + {meta.get('curl_fetches', '?')} GETs per round per target; manifests: "
             f"{meta.get('manifest_secs', '?')} s with {conc} connections; tags/list: {meta.get('tags_secs', '?')} s "
             "on one connection.")
    L.append(f"- Server RSS: VmRSS from /proc/PID/status every {meta.get('sample_interval', '?')} s while a "
             "scenario runs, and VmHWM (reset through /proc/PID/clear_refs at the start of each run, so it is the "
             "kernel's exact peak over the run). CPU: utime+stime from /proc/PID/stat (÷ CLK_TCK, "
             f"{meta.get('clk_tck', '?')}) sampled with the RSS; the figure is the CPU of the last "
             "`measured_secs` of each `berth bench` call (its measured part; set-up and warm-up come before "
             "it), interpolated between samples. CPU per request divides that by the measured requests.")
    L.append(f"- Ceilings: {sha.get('command', 'openssl speed -evp sha256')} (one core), once with the "
             "other ceilings and again right before each round's push (the machine's rate drifts by up to ~10% "
             "within a run): the push's share of SHA-256 is the median of each round's push ÷ the rate "
             "measured just before it; nginx "
             "(sendfile on, access log off, 1 worker) serving a copy of the same blob from the same filesystem, "
             "fetched with `curl -s -o /dev/null -w %{speed_download}` like berth's and Distribution's blob URLs; "
             "the disk: `dd bs=1M oflag=direct conv=fsync` of a push-sized random file into the data directory, "
             "before the rounds and after them (a virtual disk's rate varies from one minute to the next; "
             "berth fsyncs each blob before answering, so its push cannot beat the disk).")
    L.append("- Start-up: a separate data dir seeded with `berth bench --scenario seed`, then "
             f"{meta.get('startup_runs', '?')} times: time from just before `berth serve` is spawned to the first "
             "answered request (`--scenario ready`), median; the data is in the page cache.")
    L.append("- MB in the targets is read as MiB (2^20 bytes), as /proc reports kB = KiB.")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append("| goal | berth | Distribution | ceiling | ratio | target | met? |")
    L.append("|---|---|---|---|---|---|---|")
    for r in rows:
        L.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    L.append("")
    if err_runs:
        L.append("† a run with failed requests (see below).")
        L.append("")
    if per_round:
        L.append("## Per round")
        L.append("")
        L.append("| scenario | round | berth | Distribution |")
        L.append("|---|---|---|---|")
        for sc, rnd, b, d in per_round:
            L.append(f"| {sc} | {rnd} | {b} | {d} |")
        if st:
            L.append(f"| start-up (ms) | all | {', '.join(f'{v:.1f}' for v in st)} | |")
        L.append("")
    seed = load(raw, "seed-tags.json")
    sseed = load(raw, "startup-seed.json")
    if seed or sseed:
        L.append("## Set-up (not measured)")
        L.append("")
        if seed:
            L.append(f"- tags/list repository: {seed.get('tags', 0):,} tags; berth through the API with "
                     f"{seed.get('berth_api_concurrency')} connections in {(seed.get('berth_ms') or 0) / 1000:.1f} s; "
                     f"Distribution: {seed.get('dist_method')}"
                     + (f", in {seed['dist_ms'] / 1000:.1f} s" if isinstance(seed.get("dist_ms"), (int, float)) else ""))
        if sseed:
            L.append(f"- start-up data dir: `berth bench --scenario seed` made {sseed.get('requests', 0):,} requests "
                     f"in {sseed.get('measured_secs') or 0:.1f} s ({sseed.get('requests_per_sec') or 0:,.0f} req/s, "
                     f"{sseed.get('concurrency', '?')} connections, {sseed.get('errors', 0)} errors)")
        L.append("")
    if tool_notes:
        L.append("## Notes from the load generator")
        L.append("")
        for (sc, srv), note in tool_notes.items():
            L.append(f"- {sc}, {NAMES[srv]}: {note}")
        L.append("")
    if err_runs:
        L.append("## Failed requests")
        L.append("")
        for name, b in err_runs:
            samples = "; ".join(str(x) for x in (b.get("error_samples") or [])[:3])
            L.append(f"- {name}: {b.get('errors')} of {b.get('requests')} requests failed: {samples}")
        L.append("")
    failures = load(raw, "harness-failures.json")
    if failures:
        L.append("## Harness failures")
        L.append("")
        for f in failures:
            L.append(f"- {f}")
        L.append("")
    L.append("## Caveats")
    L.append("")
    for u in unsteady:
        L.append(f"- **Unsteady rounds**: {u}.")
    L.append(f"- {meta.get('nproc', '?')} cores are shared by the load generator and the server: a server that "
             "needs less CPU leaves more to the client, which raises its figures. Both servers are measured the "
             "same way.")
    L.append("- Distribution's filesystem driver does not fsync blobs or metadata; berth fsyncs every blob and "
             "commits SQLite with synchronous=FULL. berth's push figures pay for durability that Distribution's "
             "do not.")
    L.append("- Distribution ignores `n` on tags/list and always returns the whole list; its figure there is for "
             "reference only.")
    L.append("- CPU seconds are read off 100 ms samples: for runs of a second or less (pushes, pulls) they are "
             "rough (± a sample's CPU). The RSS growth of the big push is measured once, not per round.")
    L.append("")
    with open(out, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main()
