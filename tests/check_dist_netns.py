#!/usr/bin/env python3
"""Data parallelism across two "hosts": Linux network namespaces joined by
a veth pair (private addresses that exist inside the namespaces only),
each with a host name of its own (a UTS namespace). mpirun starts in the
first and reaches the second through its rsh agent, a script that runs a
command inside the namespace named by the host; MPI uses TCP alone (no
shared memory), so every message crosses a network stack.

Checked: 2 ranks, one per host, end with the weights of one process
(within 1e-5 relative); a hostfile naming a host the agent cannot reach
fails at once with Open MPI's message; a host whose link goes down mid-run makes the
other rank give up after dist_timeout (3 s here), naming the collective
and the rank on the lost host, and the job ends. The namespaces'
TCP gives up after a few seconds (net.ipv4.tcp_retries2 = 4 and short
keepalives, set inside the namespaces only), so that mpirun, too, learns
that the host is gone instead of retrying for a quarter of an hour.
Skips where namespaces cannot be made (not root, no `ip`). Every
namespace, link and process it made is removed, also on failure.
usage: check_dist_netns.py KILN MPIRUN"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import checks
from checks import report, weights

KILN, MPIRUN = sys.argv[1], sys.argv[2]
TAG = os.getpid()
NS = [f"kiln{TAG}a", f"kiln{TAG}b"]
LINKS = [f"kv{TAG}a", f"kv{TAG}b"]
NAMES = ["node-a", "node-b"]
SUBNET = f"10.213.{TAG % 250}"
ADDRS = [f"{SUBNET}.1", f"{SUBNET}.2"]
MODEL = ("[input]\nshape = 8\n[linear]\nout = 32\n[relu]\n[linear]\nout = 3\n[train]\n"
         "optimizer = sgd\nlr = 0.1\nmomentum = 0.9\nbatch = 64\nepochs = 3\nval = 0.1\n")
ENV = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def cleanup():
    """Ends every process left in the namespaces, then removes them (and
    with them the veth pair); a link that never reached a namespace too."""
    for ns in NS:
        r = sh("ip", "netns", "pids", ns, check=False)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for ns in NS:
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", LINKS[0], check=False)


def make_hosts(tmp):
    """The namespaces, their link, and the rsh agent and hostfile."""
    if os.geteuid() != 0:
        skip("network namespaces need root (ip netns add)")
    if not shutil.which("ip") or not shutil.which("unshare"):
        skip("needs ip (iproute2) and unshare (util-linux)")
    r = sh("ip", "netns", "add", NS[0], check=False)
    if r.returncode != 0:
        skip(f"cannot make a network namespace here: {r.stderr.strip()}")
    sh("ip", "netns", "add", NS[1])
    sh("ip", "link", "add", LINKS[0], "type", "veth", "peer", "name", LINKS[1])
    for ns, link, addr in zip(NS, LINKS, ADDRS):
        sh("ip", "link", "set", link, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", link)
        sh("ip", "-n", ns, "link", "set", link, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # give up on a lost peer within seconds (this namespace's TCP only)
        sh("ip", "netns", "exec", ns, "sh", "-c", "echo 4 > /proc/sys/net/ipv4/tcp_retries2")
    agent = os.path.join(tmp, "agent")
    with open(agent, "w", encoding="ascii") as f:
        f.write("#!/bin/sh\n# mpirun's rsh agent: runs a command inside the host's namespace\n"
                "host=$1; shift\ncase $host in\n")
        for ns, name, addr in zip(NS, NAMES, ADDRS):
            f.write(f"  {addr}) ns={ns} name={name} ;;\n")
        f.write("  *) echo \"agent: no host $host\" >&2; exit 1 ;;\nesac\n"
                "exec ip netns exec \"$ns\" unshare --uts sh -c "
                "'hostname \"$0\"; eval \"$1\"' \"$name\" \"$*\"\n")
    os.chmod(agent, 0o755)
    with open(os.path.join(tmp, "hosts"), "w", encoding="ascii") as f:
        f.write("".join(f"{a} slots=1\n" for a in ADDRS))
    return agent


def mpirun(tmp, agent, *args, ranks=2):
    """mpirun inside the first namespace, under its host name, over TCP only."""
    inner = [MPIRUN, "--hostfile", os.path.join(tmp, "hosts"), "-np", str(ranks),
             "--mca", "plm_rsh_agent", agent, "--mca", "btl", "tcp,self",
             "--mca", "btl_tcp_if_include", f"{SUBNET}.0/24",
             "--mca", "oob_tcp_if_include", f"{SUBNET}.0/24",
             "--mca", "oob_tcp_keepalive_time", "6", "--mca", "oob_tcp_keepalive_intvl", "1",
             "--mca", "oob_tcp_keepalive_probes", "2",
             "-x", "POCL_MAX_PTHREAD_COUNT", "-x", "KILN_DIST_TIMEOUT", KILN, "train", *args]
    return ["ip", "netns", "exec", NS[0], "unshare", "--uts", "sh", "-c",
            f'hostname {NAMES[0]}; exec "$@"', "sh"] + inner


def same_weights(tmp, agent, train):
    one = os.path.join(tmp, "one")
    r = subprocess.run([KILN, "train"] + train + ["--out", one], capture_output=True, text=True,
                       timeout=300, env=ENV)
    if r.returncode != 0:
        sys.exit(f"one process failed:\n{r.stdout}\n{r.stderr}")
    two = os.path.join(tmp, "two")
    r = subprocess.run(mpirun(tmp, agent, *train, "--out", two), capture_output=True, text=True,
                       timeout=300, env=dict(ENV, KILN_DIST_TIMEOUT="60"))
    hosts = all(f"rank {k} of 2: device" in r.stdout and f"on {NAMES[k]}" in r.stdout
                for k in (0, 1))
    report(r.returncode == 0 and hosts, f"2 ranks on {NAMES[0]} and {NAMES[1]} over TCP",
           r.stdout + r.stderr)
    if r.returncode != 0:
        return
    a, b = weights(os.path.join(one, "final.safetensors")), weights(
        os.path.join(two, "final.safetensors"))
    worst = max(abs(x - y) / max(max(abs(v) for v in a[k]), 0.01)
                for k in a for x, y in zip(a[k], b[k])) if set(a) == set(b) else float("inf")
    report(worst < 1e-5, f"their weights against one process's: worst relative difference "
           f"{worst:.3g}")


def unreachable_host(tmp, agent, train):
    """A hostfile naming a third host that the agent cannot reach (as ssh
    would fail to connect): mpirun fails at once with Open MPI's message."""
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, encoding="ascii") as f:
        kept = f.read()
    with open(hosts, "a", encoding="ascii") as f:
        f.write(f"{SUBNET}.3 slots=1\n")
    cmd = mpirun(tmp, agent, *train, "--out", os.path.join(tmp, "three"), ranks=3)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
        text = r.stdout + r.stderr
        report(r.returncode != 0 and f"no host {SUBNET}.3" in text and "ORTE" in text,
               f"a hostfile naming an unreachable host: mpirun fails (exit {r.returncode}) "
               "with Open MPI's message", text)
    except subprocess.TimeoutExpired:
        report(False, "a hostfile naming an unreachable host: mpirun hung for 120 s")
    with open(hosts, "w", encoding="ascii") as f:
        f.write(kept)


def link_down(tmp, agent, train):
    out = os.path.join(tmp, "down")
    p = subprocess.Popen(mpirun(tmp, agent, *train, "--out", out, "--epochs", "100000"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(ENV, KILN_DIST_TIMEOUT="3"), start_new_session=True)
    try:
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline:
            try:
                with open(os.path.join(out, "log.csv"), encoding="ascii") as f:
                    if len(f.readlines()) > 2:
                        break
            except OSError:
                pass
            time.sleep(0.05)
        sh("ip", "-n", NS[1], "link", "set", LINKS[1], "down")
        down = time.time()
        try:
            text, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            report(False, "a host's link went down: the job still runs after 60 s")
            return
        took = time.time() - down
        said = all(s in text for s in ("timed out after 3.", f"rank 1 (on {NAMES[1]})",
                                       "did not answer", "rank 0 of 2 failed"))
        report(p.returncode != 0 and said,
               f"{NAMES[1]}'s link down mid-run: rank 0 timed out naming rank 1 on "
               f"{NAMES[1]}, and the job ended {took:.1f} s later (exit {p.returncode})", text)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main():
    def stop(sig, frame):
        raise SystemExit(f"stopped by signal {sig}")
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            agent = make_hosts(tmp)
            rng = random.Random(7)
            with open(os.path.join(tmp, "d.csv"), "w", encoding="ascii") as f:
                f.write(",".join(f"x{i}" for i in range(8)) + ",label\n")
                for _ in range(700):
                    x = [rng.gauss(0, 1) for _ in range(8)]
                    s = x[0] + x[1] - x[2]
                    f.write(",".join(f"{v:.6f}" for v in x) +
                            f",{0 if s < -0.6 else 1 if s < 0.6 else 2}\n")
            with open(os.path.join(tmp, "m.ini"), "w", encoding="ascii") as f:
                f.write(MODEL)
            train = [os.path.join(tmp, "m.ini"), "--data", os.path.join(tmp, "d.csv")]
            same_weights(tmp, agent, train)
            unreachable_host(tmp, agent, train)
            link_down(tmp, agent, train)
        finally:
            cleanup()
    left = sh("ip", "netns", "list").stdout
    report(not any(ns in left for ns in NS), "every namespace removed")
    sys.exit(1 if checks.failed else 0)


main()
