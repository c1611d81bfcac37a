#!/usr/bin/env python3
"""Sample one process's memory and CPU from /proc while a benchmark scenario runs.

    procwatch.py PID OUT.json [--interval 0.1] [--reset-hwm]

Reads /proc/PID/stat (utime+stime) and /proc/PID/status (VmRSS, VmHWM) once at start,
then VmRSS every INTERVAL seconds until SIGTERM/SIGINT (or until PID exits), then
writes one JSON object to OUT.json:

    {"pid", "interval_secs", "wall_secs", "samples",
     "cpu_secs"        utime+stime consumed between start and stop (CLK_TCK ticks),
     "rss_start_kb"    VmRSS when sampling started,
     "rss_peak_kb"     highest VmRSS seen (including the start and final readings),
     "rss_end_kb"      VmRSS at stop,
     "hwm_kb"          VmHWM at stop (reset at start with --reset-hwm, so it is the
                       kernel's exact peak over the window, catching spikes between
                       samples; otherwise the peak over the process's lifetime),
     "hwm_reset"       whether the reset worked,
     "exited"          PID was gone before the stop signal,
     "clk_tck"         the kernel's clock ticks per second,
     "cpu_series"      [[seconds since start, utime+stime ticks since start], ...] at
                       every sample, so that a caller can take the CPU of a sub-window
                       (e.g. the last measured_secs of a run, excluding its set-up)}

OUT.json.started is created once the start readings are taken, so the caller can wait
for it before starting the load.
"""
import json
import os
import signal
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15
    return int(rest[11]) + int(rest[12])


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":", 1)
                out[key] = int(val.split()[0])
    return out


def main():
    args = sys.argv[1:]
    interval = 0.1
    reset_hwm = False
    pos = []
    i = 0
    while i < len(args):
        if args[i] == "--interval":
            interval = float(args[i + 1])
            i += 2
        elif args[i] == "--reset-hwm":
            reset_hwm = True
            i += 1
        else:
            pos.append(args[i])
            i += 1
    if len(pos) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    pid, out = int(pos[0]), pos[1]

    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    hwm_reset = False
    if reset_hwm:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # "reset the peak resident set size" (Linux >= 4.0)
            hwm_reset = True
        except OSError:
            pass
    try:
        t0 = time.monotonic()
        cpu0 = cpu_ticks(pid)
        st = status(pid)
    except (OSError, ValueError) as e:
        print(f"procwatch: cannot read /proc/{pid}: {e}", file=sys.stderr)
        sys.exit(1)
    rss_start = st.get("VmRSS", 0)
    peak = rss_start
    last = st
    cpu_last = cpu0
    series = [[0.0, 0]]
    samples = 1
    exited = False
    open(out + ".started", "w").close()

    while not stop:
        time.sleep(interval)
        try:
            last = status(pid)
            cpu_last = cpu_ticks(pid)
        except (OSError, ValueError):
            exited = True
            break
        samples += 1
        peak = max(peak, last.get("VmRSS", 0))
        series.append([round(time.monotonic() - t0, 4), cpu_last - cpu0])

    if not exited:
        try:
            last = status(pid)
            cpu_last = cpu_ticks(pid)
            peak = max(peak, last.get("VmRSS", 0))
            series.append([round(time.monotonic() - t0, 4), cpu_last - cpu0])
        except (OSError, ValueError):
            exited = True
    result = {
        "pid": pid,
        "interval_secs": interval,
        "wall_secs": round(time.monotonic() - t0, 3),
        "samples": samples,
        "cpu_secs": (cpu_last - cpu0) / TICKS,
        "rss_start_kb": rss_start,
        "rss_peak_kb": max(peak, last.get("VmHWM", 0) if hwm_reset else 0),
        "rss_sampled_peak_kb": peak,
        "rss_end_kb": last.get("VmRSS", 0),
        "hwm_kb": last.get("VmHWM", 0),
        "hwm_reset": hwm_reset,
        "exited": exited,
        "clk_tck": TICKS,
        "cpu_series": series,
    }
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
        f.write("\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
