#!/usr/bin/env python3
"""A logging HTTP/1.1 relay for seeing exactly what real registry clients send.

    trace-proxy.py LISTEN_PORT UPSTREAM_PORT LOGFILE

Listens on 127.0.0.1:LISTEN_PORT, relays every connection to 127.0.0.1:UPSTREAM_PORT
byte for byte, and writes one JSON line per request and per response to LOGFILE
(method, target, the headers that matter to a registry, body framing and size). Used by
run.sh when TRACE_HTTP=1; standard library only.
"""
import asyncio
import itertools
import json
import sys
import time

KEEP_REQ = {"accept", "content-type", "content-length", "content-range", "range",
            "transfer-encoding", "expect", "user-agent", "authorization", "connection",
            "docker-content-digest", "oci-chunk-min-length"}
KEEP_RESP = {"content-type", "content-length", "content-range", "range", "location",
             "docker-content-digest", "docker-upload-uuid", "docker-distribution-api-version",
             "transfer-encoding", "link", "oci-subject", "oci-chunk-min-length",
             "www-authenticate", "connection"}

conn_ids = itertools.count(1)
log_file = None


def log(rec):
    rec["t"] = round(time.time(), 4)
    log_file.write(json.dumps(rec, sort_keys=True) + "\n")
    log_file.flush()


async def read_head(reader):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            k = k.strip().lower()
            headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
    return head, lines[0], headers


async def relay_body(reader, writer, headers, close_delimited=False):
    """Copy one message body; return (framing, size)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            n = int(line.split(b";")[0].strip(), 16)
            if n == 0:
                # trailers until an empty line
                while True:
                    t = await reader.readuntil(b"\r\n")
                    writer.write(t)
                    if t == b"\r\n":
                        break
                await writer.drain()
                return "chunked", size
            data = await reader.readexactly(n + 2)
            writer.write(data)
            size += n
            await writer.drain()
    if "content-length" in headers:
        left = int(headers["content-length"])
        total = left
        while left > 0:
            data = await reader.read(min(left, 1 << 20))
            if not data:
                raise ConnectionError("eof in body")
            writer.write(data)
            left -= len(data)
            await writer.drain()
        return "length", total
    if close_delimited:
        size = 0
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return "close", size
            writer.write(data)
            size += len(data)
            await writer.drain()
    return "none", 0


async def handle(creader, cwriter, upstream_port):
    cid = next(conn_ids)
    # Clients told to skip TLS verification (skopeo/podman --tls-verify=false, dockerd's
    # insecure registries) first try TLS on the plain port and fall back to HTTP once that
    # fails. Forward the ClientHello so that the registry's own reaction is what the
    # client sees; log it since a registry that just waits costs every command ~10 s.
    try:
        first = await creader.readexactly(1)
    except (asyncio.IncompleteReadError, ConnectionError):
        cwriter.close()
        return
    try:
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError as e:
        log({"conn": cid, "error": "upstream connect: %s" % e})
        cwriter.close()
        return
    methods = asyncio.Queue()
    if first == b"\x16":
        log({"conn": cid, "dir": "req", "tls_client_hello": True})
        t0 = time.monotonic()
        uwriter.write(first)

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        return
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                return

        tasks = [asyncio.ensure_future(pipe(creader, uwriter)),
                 asyncio.ensure_future(pipe(ureader, cwriter))]
        await asyncio.wait(tasks, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        log({"conn": cid, "dir": "resp", "tls_client_hello": True,
             "closed_after_s": round(time.monotonic() - t0, 3)})
        cwriter.close()
        uwriter.close()
        return
    # put the peeked byte back in front of the stream
    creader._buffer[0:0] = first

    async def requests():
        try:
            while True:
                h = await read_head(creader)
                if h is None:
                    break
                raw, first, headers = h
                method, target = (first.split(" ") + ["", ""])[:2]
                await methods.put(method)
                uwriter.write(raw)
                framing, size = await relay_body(creader, uwriter, headers)
                log({"conn": cid, "dir": "req", "method": method, "target": target,
                     "headers": {k: v for k, v in headers.items() if k in KEEP_REQ},
                     "body": framing, "size": size})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                uwriter.write_eof()
            except (OSError, RuntimeError):
                pass

    async def responses():
        try:
            while True:
                h = await read_head(ureader)
                if h is None:
                    break
                raw, first, headers = h
                parts = first.split(" ", 2)
                status = int(parts[1]) if len(parts) > 1 else 0
                cwriter.write(raw)
                if 100 <= status < 200:
                    await cwriter.drain()
                    log({"conn": cid, "dir": "resp", "status": status, "interim": True})
                    continue
                method = await methods.get()
                if method == "HEAD" or status in (204, 304):
                    framing, size = "none", 0
                    await cwriter.drain()
                else:
                    framing, size = await relay_body(ureader, cwriter, headers, close_delimited=True)
                log({"conn": cid, "dir": "resp", "method": method, "status": status,
                     "headers": {k: v for k, v in headers.items() if k in KEEP_RESP},
                     "body": framing, "size": size})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            cwriter.close()

    await asyncio.gather(requests(), responses())
    uwriter.close()


async def main():
    global log_file
    listen, upstream, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    log_file = open(path, "a")
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream), "127.0.0.1", listen,
                                        limit=1 << 20)
    print("trace-proxy listening on 127.0.0.1:%d -> %d" % (listen, upstream), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
