#!/usr/bin/env python3
"""Runs the noida-db Kafka broker behind a small Kafka-protocol proxy that paces idle fetches.

Why: noida-db answers a Fetch at once even when it has no data, ignoring the request's
MaxWaitTime (and MinBytes). librdkafka then re-fetches immediately, so every idle consumer
(the three Milvus servers have dozens, the CDC has one per channel) spins at ~5,000 fetches/s:
on 2 cores the machine sat at 100 % CPU with nothing to do, Milvus and etcd missed deadlines
and Milvus stopped itself. A real broker holds an empty fetch until data arrives or MaxWait
passes; this proxy approximates that: after a Fetch came back without records on a connection,
the next Fetch on it is held for --idle-delay-ms (20 ms: at most ~50 empty fetches/s per
connection, at most 20 ms more latency for the first message after a quiet spell).

Everything else passes through unchanged, except that the broker's own port is replaced by the
proxy's in Metadata and FindCoordinator answers, so clients keep talking to the proxy.

    kafka_idle_proxy.py --listen-port 19092 --broker-port 19094 -- noida-db start ... --kafka-port 19094

The broker is this process's child: it is stopped with it (SIGTERM/SIGINT, or the kernel's
parent-death signal if this process is killed).
"""
import argparse
import asyncio
import ctypes
import signal
import struct
import subprocess
import sys

FETCH, METADATA, FIND_COORDINATOR = 1, 3, 10
# A Fetch response this small carries no record batch (one with a single small message is
# larger); an empty answer for one partition is ~100 bytes.
EMPTY_FETCH_MAX_BYTES = 400


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(4)
    (n,) = struct.unpack(">i", head)
    return head + await reader.readexactly(n)


class Conn:
    def __init__(self, args):
        self.args = args
        self.api_of = {}  # correlation id -> api key of requests awaiting an answer
        self.idle = False  # the last Fetch answer carried no records

    async def requests(self, client: asyncio.StreamReader, broker: asyncio.StreamWriter):
        while True:
            frame = await read_frame(client)
            api, _ver, corr = struct.unpack(">hhi", frame[4:12])
            self.api_of[corr] = api
            if api == FETCH and self.idle:
                await asyncio.sleep(self.args.idle_delay_ms / 1000)
            broker.write(frame)
            await broker.drain()

    async def responses(self, broker: asyncio.StreamReader, client: asyncio.StreamWriter):
        ours = b"127.0.0.1" + struct.pack(">i", self.args.listen_port)
        theirs = b"127.0.0.1" + struct.pack(">i", self.args.broker_port)
        while True:
            frame = await read_frame(broker)
            (corr,) = struct.unpack(">i", frame[4:8])
            api = self.api_of.pop(corr, None)
            if api == FETCH:
                self.idle = len(frame) <= EMPTY_FETCH_MAX_BYTES
            elif api in (METADATA, FIND_COORDINATOR):
                frame = frame.replace(theirs, ours)
            client.write(frame)
            await client.drain()


async def serve(args):
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter):
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", args.broker_port)
        except OSError:
            cw.close()
            return
        conn = Conn(args)
        tasks = [asyncio.create_task(conn.requests(cr, bw)), asyncio.create_task(conn.responses(br, cw))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for w in (cw, bw):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen_port, limit=1 << 20)
    async with server:
        await server.serve_forever()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--broker-port", type=int, required=True)
    ap.add_argument("--idle-delay-ms", type=float, default=20)
    ap.add_argument("broker_cmd", nargs="+", help="the broker command line (after --)")
    args = ap.parse_args()

    def die_with_parent():  # the broker gets SIGTERM if this process dies, even by SIGKILL
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    broker = subprocess.Popen(args.broker_cmd, preexec_fn=die_with_parent)

    def stop(*_):
        broker.terminate()
        try:
            broker.wait(timeout=8)
        except subprocess.TimeoutExpired:
            broker.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(args))

    async def watch():  # the broker exiting ends the proxy too
        while broker.poll() is None:
            await asyncio.sleep(0.5)
        print(f"kafka_idle_proxy: broker exited with {broker.returncode}", file=sys.stderr)
        task.cancel()

    loop.create_task(watch())
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    return broker.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
