#!/usr/bin/env python3
"""A tiny client of the ax hook socket, speaking the 384-byte messages of
native/ax_proto.h directly (no hook library). Used by test/hookserver.test.ts.

  hookclient.py hello SOCK NAME          one HELLO; prints "status S err E" or "closed"
  hookclient.py fuzz SOCK SEED N [AUTH]  N bounded random messages over many sessions;
                                         AUTH: first a valid HELLO with $AX_APP (the
                                         fuzzer then runs inside an app); prints a summary
"""
import os, random, socket, struct, sys, time

MAGIC = 0x31305841
SIZE = 384
OFF_NAME = 80


def frame(op, seq=1, status=0, err=0, sock=0, arg=0, pid=0, a=b"", b=b"", name=b"", flags=0):
    head = struct.pack("<IHHIiiIiI", MAGIC, op, flags, seq, status, err, sock, arg, pid)
    body = head + a.ljust(24, b"\0")[:24] + b.ljust(24, b"\0")[:24] + name[:255]
    return body.ljust(SIZE, b"\0")


def addr(family, ip, port):
    if family == 2:
        raw = socket.inet_aton(ip)
    elif family == 10:
        raw = socket.inet_pton(socket.AF_INET6, ip)
    else:
        raw = os.urandom(16)
    return struct.pack("<HHI", family, port, 0) + raw.ljust(16, b"\0")


def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect(path)
    return s


def recv_reply(s):
    buf = b""
    while len(buf) < SIZE:
        chunk = s.recv(SIZE - len(buf))
        if not chunk:
            return None
        buf += chunk
    magic, op, flags, seq, status, err = struct.unpack_from("<IHHIii", buf)
    return status, err


def hello(path, name):
    s = connect(path)
    s.sendall(frame(1, name=name.encode()))
    r = recv_reply(s)
    if r is None:
        print("closed")
        return
    print("status %d err %d" % r)
    # A refused session is closed by the daemon after the answer.
    try:
        print("then", "closed" if s.recv(1) == b"" else "open")
    except socket.timeout:
        print("then open")


def fuzz(path, seed, n, auth):
    rnd = random.Random(seed)
    token = os.environ.get("AX_APP", "") if auth else ""
    sent = replies = sessions = 0
    ips = ["0.0.0.0", "10.240.0.1", "10.99.0.1", "127.0.0.1", "192.0.2.1", "::", "::1", "::ffff:10.240.0.1"]
    s = None
    deadline = time.time() + 12
    while sent < n and time.time() < deadline:
        if s is None:
            try:
                s = connect(path)
            except OSError:
                time.sleep(0.01)
                continue
            sessions += 1
            if token:
                s.sendall(frame(1, name=token.encode(), arg=1))
                if recv_reply(s) is None:
                    s.close(); s = None
                    continue
        kind = rnd.randrange(10)
        try:
            if kind == 0:  # random bytes
                s.sendall(os.urandom(rnd.choice([1, 100, 383, 384, 385, 1000])))
            elif kind == 1:  # a truncated frame, then close
                s.sendall(frame(rnd.randrange(1, 11))[: rnd.randrange(1, SIZE)])
                s.close(); s = None
            elif kind == 2:  # a flood without reading
                s.sendall(b"".join(frame(6, seq=i, name=b"web") for i in range(rnd.choice([10, 300]))))
            else:  # valid magic, random op and fields
                fam = lambda: rnd.choice([0, 2, 10, 2, 10, 1, 99])
                ip = rnd.choice(ips)
                fa = fam()
                fa_ip = ip if (fa == 10) == (":" in ip) else ("0.0.0.0" if fa == 2 else "::")
                m = frame(
                    rnd.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, rnd.randrange(65536)]),
                    seq=rnd.randrange(1 << 32), status=rnd.randrange(-5, 6), err=rnd.randrange(-5, 200),
                    sock=rnd.choice([0, 1, 2, rnd.randrange(1 << 32)]), arg=rnd.randrange(-(1 << 31), 1 << 31),
                    pid=rnd.randrange(1 << 32), a=addr(fa, fa_ip, rnd.randrange(65536)),
                    b=addr(fam(), "0.0.0.0", rnd.randrange(65536)),
                    name=bytes(rnd.randrange(1, 256) for _ in range(rnd.choice([0, 5, 255, 300]))),
                    flags=rnd.randrange(65536))
                s.sendall(m)
                if rnd.randrange(2):
                    s.settimeout(0.05)  # one-way notes and refused requests get no answer
                    try:
                        if recv_reply(s) is not None:
                            replies += 1
                    except socket.timeout:
                        pass
                    s.settimeout(3)
            sent += 1
        except OSError:
            s.close(); s = None
            sent += 1
            continue
        if s is not None and rnd.randrange(8) == 0:
            s.close(); s = None
    if s is not None:
        s.close()
    print("sent %d sessions %d replies %d" % (sent, sessions, replies))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "hello":
        hello(sys.argv[2], sys.argv[3])
    elif cmd == "fuzz":
        fuzz(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), len(sys.argv) > 5)
    else:
        sys.exit("usage: hookclient.py hello SOCK NAME | fuzz SOCK SEED N [auth]")
