#!/usr/bin/python3
"""docker-py (Debian's python3-docker, 5.x) against `berth serve`.

Usage: DOCKER_HOST=unix:///path/to/berth.sock /usr/bin/python3 docker_py.py busybox:test

Exercises the Engine API the way docker-py (and so docker-compose 1.x) drives it,
asserting on each answer; removes everything it made; prints "docker-py: ok".
"""

import io
import os
import random
import string
import sys
import time

import docker
from docker.utils.socket import next_frame_header, read_exactly

IMG = sys.argv[1] if len(sys.argv) > 1 else "busybox:test"
SUFFIX = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def name(what):
    return "dpy-%s-%s" % (what, SUFFIX)


def step(msg):
    print("docker-py: " + msg, flush=True)


# Departures from Docker that do not stop the rest of the run: collected by `check`
# and reported (as a failure) at the end.
MISMATCHES = []


def check(cond, msg):
    if not cond:
        MISMATCHES.append(msg)
        print("docker-py: MISMATCH: " + msg, file=sys.stderr, flush=True)


def expect_image_gone(ref):
    """docker-py turns a 404 into ImageNotFound only when the message holds Docker's
    "No such image" (docker-compose relies on that to decide to pull or build)."""
    try:
        client_global.images.get(ref)
    except docker.errors.ImageNotFound:
        return
    except docker.errors.NotFound as e:
        check(False, "404 for image %s is not ImageNotFound: %r" % (ref, e.explanation))
        return
    raise AssertionError("image %s still there" % ref)


def read_frames(sock, want, timeout=20):
    """Reads multiplexed attach frames (8-byte header: stream, 0, 0, 0, size BE) from
    `sock` until the stdout payload holds `want`; returns the stdout bytes."""
    sock.settimeout(timeout)
    out = b""
    deadline = time.time() + timeout
    while want not in out:
        assert time.time() < deadline, "timed out reading attach frames, got %r" % out
        stream, size = next_frame_header(sock)
        assert size >= 0, "attach stream ended early, got %r" % out
        data = read_exactly(sock, size)
        assert stream == 1, "frame on stream %d: %r" % (stream, data)
        out += data
    return out


def main():
    assert os.environ.get("DOCKER_HOST"), "DOCKER_HOST must name the berth socket"
    global client_global
    client = client_global = docker.from_env(timeout=120)
    api = client.api
    t0 = int(time.time()) - 1

    made_containers = []
    made_images = []
    made_volumes = []
    made_networks = []

    def detached(cmd, what, **kw):
        """A detached container of IMG named for `what`, removed at the end."""
        c = client.containers.run(IMG, cmd, detach=True, name=name(what), **kw)
        made_containers.append(c.name)
        return c

    try:
        # --- system -------------------------------------------------------------
        assert client.ping() is True
        v = client.version()
        assert v["ApiVersion"], v
        assert v["Os"] == "linux", v
        assert "Version" in v, v
        info = client.info()
        assert "Containers" in info and "Images" in info, info
        assert info["Images"] >= 1, info
        step("version %s, info: %d images" % (v["ApiVersion"], info["Images"]))

        # --- images: list / get -------------------------------------------------
        imgs = client.images.list()
        assert any(IMG in i.tags for i in imgs), [i.tags for i in imgs]
        image = client.images.get(IMG)
        assert image.id.startswith("sha256:"), image.id
        assert IMG in image.tags, image.tags
        step("images list/get")

        # --- containers.run, foreground, removed -------------------------------
        out = client.containers.run(IMG, "echo hi", remove=True, network_mode="none")
        assert out == b"hi\n", out
        step("run echo hi -> %r" % out)

        # A failing foreground run raises ContainerError carrying its stderr.
        try:
            client.containers.run(
                IMG, ["sh", "-c", "echo bad >&2; exit 2"], remove=True, network_mode="none"
            )
            raise AssertionError("run of a failing command did not raise")
        except docker.errors.ContainerError as e:
            assert e.exit_status == 2, e
            assert e.stderr == b"bad\n", e.stderr
        try:
            client.containers.get(name("never"))
            raise AssertionError("get of a missing container did not raise")
        except docker.errors.NotFound:
            pass
        step("ContainerError, NotFound")

        # --- detached container, logs, wait ------------------------------------
        c = detached(["sh", "-c", "echo one; echo two >&2; echo three"], "logs", network_mode="none")
        res = c.wait(timeout=60)
        assert res["StatusCode"] == 0, res
        logs = c.logs()
        # stdout and stderr are separate pipes: their interleaving is not ordered.
        assert sorted(logs.splitlines()) == [b"one", b"three", b"two"], logs
        assert c.logs(stderr=False) == b"one\nthree\n", c.logs(stderr=False)
        assert c.logs(stdout=False) == b"two\n", c.logs(stdout=False)
        c.reload()
        assert c.status == "exited", c.status
        assert c.attrs["State"]["ExitCode"] == 0, c.attrs["State"]
        step("detached run, wait, logs")

        # --- exit status through wait ------------------------------------------
        c = detached(["sh", "-c", "exit 7"], "exit", network_mode="none")
        assert c.wait(timeout=60)["StatusCode"] == 7
        step("wait -> 7")

        # --- logs(stream=True, follow=True) on a container still printing ------
        c = detached(
            ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"],
            "follow",
            network_mode="none",
        )
        got = b""
        for chunk in c.logs(stream=True, follow=True):
            got += chunk
        assert got == b"".join(b"line%d\n" % i for i in range(1, 6)), got
        assert c.wait(timeout=60)["StatusCode"] == 0
        step("logs follow streamed %d lines" % got.count(b"\n"))

        # --- a long-running container: exec, list, stop, remove -----------------
        run = detached("sleep 1000", "run", network_mode="none")
        run.reload()
        assert run.status == "running", run.status

        top = run.top()
        assert any("sleep" in " ".join(p) for p in top["Processes"]), top
        r = run.exec_run("sh -c 'echo x; exit 3'")
        assert r.exit_code == 3, r
        assert r.output == b"x\n", r.output
        r = run.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert r.exit_code == 0, r
        assert r.output == (b"out\n", b"err\n"), r.output
        r = run.exec_run("env", environment={"DPY": "yes"}, workdir="/tmp")
        assert b"DPY=yes" in r.output, r.output
        r = run.exec_run(["sh", "-c", "pwd"], workdir="/tmp")
        assert r.output == b"/tmp\n", r.output
        r = run.exec_run(["sh", "-c", "for i in 1 2 3; do echo s$i; sleep 0.1; done"], stream=True)
        assert r.exit_code is None
        streamed = b"".join(r.output)
        assert streamed == b"s1\ns2\ns3\n", streamed
        step("exec_run exit code, demux, env, workdir, stream")

        listed = client.containers.list(all=True, filters={"name": name("run")})
        assert [x.name for x in listed] == [name("run")], listed
        running = client.containers.list(filters={"status": "running"})
        assert name("run") in [x.name for x in running], running
        exited = client.containers.list(all=True, filters={"status": "exited"})
        assert name("logs") in [x.name for x in exited], exited
        assert name("run") not in [x.name for x in exited], exited
        step("containers.list filters")

        # --- attach_socket to a container on stdin, `cat` echoes it back ---------
        cat = client.containers.create(
            IMG, "cat", stdin_open=True, network_mode="none", name=name("cat")
        )
        made_containers.append(cat.name)
        sock = cat.attach_socket(params={"stdin": 1, "stream": 1, "stdout": 1, "stderr": 1})
        raw = getattr(sock, "_sock", sock)
        cat.start()
        raw.sendall(b"hello berth\n")
        echoed = read_frames(raw, b"hello berth\n")
        assert echoed == b"hello berth\n", echoed
        raw.sendall(b"again\n")
        echoed = read_frames(raw, b"again\n")
        assert echoed == b"again\n", echoed
        # Closing stdin ends `cat`.
        import socket as _socket

        raw.shutdown(_socket.SHUT_WR)
        assert cat.wait(timeout=60)["StatusCode"] == 0
        sock.close()
        step("attach_socket stdin -> cat -> stdout frames")

        # --- attach/ws: the same over a WebSocket (websocket-client, docker-py's
        # dependency, on the service's unix socket) -------------------------------
        import socket as _socket
        import websocket

        wcat = detached("cat", "wcat", stdin_open=True, network_mode="none")
        unix = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        unix.connect(os.environ["DOCKER_HOST"][len("unix://"):])
        ws = websocket.create_connection(
            "ws://localhost/v1.47/containers/%s/attach/ws?stream=1&stdin=1&stdout=1" % wcat.id,
            socket=unix,
            timeout=20,
        )
        ws.send_binary(b"over a websocket\n")
        got = b""
        while b"over a websocket\n" not in got:
            got += ws.recv()
        assert got == b"over a websocket\n", got
        ws.close()
        wcat.remove(force=True)
        step("attach/ws stdin -> cat -> messages")

        # --- images: tag, build, remove ----------------------------------------
        tag_repo = "dpy-tag-" + SUFFIX
        assert image.tag(tag_repo, "v1") is True
        made_images.append(tag_repo + ":v1")
        assert tag_repo + ":v1" in client.images.get(IMG).tags
        assert client.images.get(tag_repo + ":v1").id == image.id

        build_tag = "dpy-built-" + SUFFIX + ":1"
        dockerfile = io.BytesIO(("FROM %s\nRUN echo built > /b\n" % IMG).encode())
        built, build_log = client.images.build(fileobj=dockerfile, tag=build_tag, rm=True)
        made_images.append(build_tag)
        build_log = list(build_log)
        assert any("stream" in l for l in build_log), build_log
        assert build_tag in built.tags, built.tags
        out = client.containers.run(build_tag, "cat /b", remove=True, network_mode="none")
        assert out == b"built\n", out
        step("image tag, build (%s), run built image" % built.short_id)

        client.images.remove(build_tag)
        made_images.remove(build_tag)
        expect_image_gone(build_tag)
        client.images.remove(tag_repo + ":v1")
        made_images.remove(tag_repo + ":v1")
        assert IMG in client.images.get(IMG).tags
        assert tag_repo + ":v1" not in client.images.get(IMG).tags
        step("images remove")

        # --- volumes -------------------------------------------------------------
        vname = name("vol")
        vol = client.volumes.create(name=vname, labels={"dpy": SUFFIX})
        made_volumes.append(vname)
        assert vol.name == vname, vol.attrs
        assert vname in [x.name for x in client.volumes.list()]
        assert [x.name for x in client.volumes.list(filters={"label": "dpy=" + SUFFIX})] == [vname]
        got = client.volumes.get(vname)
        assert got.attrs["Driver"] == "local", got.attrs
        assert got.attrs["Labels"] == {"dpy": SUFFIX}, got.attrs
        out = client.containers.run(
            IMG,
            ["sh", "-c", "echo data > /v/f; cat /v/f"],
            volumes={vname: {"bind": "/v", "mode": "rw"}},
            remove=True,
            network_mode="none",
        )
        assert out == b"data\n", out
        out = client.containers.run(
            IMG, "cat /v/f", volumes=[vname + ":/v:ro"], remove=True, network_mode="none"
        )
        assert out == b"data\n", out
        got.remove()
        made_volumes.remove(vname)
        assert vname not in [x.name for x in client.volumes.list()]
        step("volumes create/list/get/use/remove")

        # --- networks ------------------------------------------------------------
        nname = name("net")
        subnet_octet = random.randint(0, 255)
        subnet = "10.219.%d.0/24" % subnet_octet
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        net = client.networks.create(nname, driver="bridge", ipam=ipam, labels={"dpy": SUFFIX})
        made_networks.append(nname)
        assert net.name == nname
        assert nname in [x.name for x in client.networks.list()]
        assert [x.name for x in client.networks.list(names=[nname])] == [nname]
        got = client.networks.get(net.id)
        assert got.name == nname, got.attrs
        assert got.attrs["IPAM"]["Config"][0]["Subnet"] == subnet, got.attrs["IPAM"]

        member = detached("sleep 1000", "member")
        net.connect(member, aliases=["memb"])
        net.reload()
        assert member.id in net.attrs["Containers"], net.attrs["Containers"]
        member.reload()
        ip = member.attrs["NetworkSettings"]["Networks"][nname]["IPAddress"]
        assert ip.startswith("10.219.%d." % subnet_octet), member.attrs["NetworkSettings"]
        r = member.exec_run("cat /proc/net/fib_trie")
        assert ip.encode() in r.output, (ip, r.output[:400])
        net.disconnect(member)
        net.reload()
        assert member.id not in net.attrs.get("Containers", {}), net.attrs["Containers"]
        member.reload()
        assert nname not in member.attrs["NetworkSettings"]["Networks"]

        # A container started straight onto the network.
        on = detached("sleep 1000", "onnet", network=nname)
        on.reload()
        assert nname in on.attrs["NetworkSettings"]["Networks"], on.attrs["NetworkSettings"]
        on.stop(timeout=1)
        on.remove()
        made_containers.remove(on.name)
        member.stop(timeout=1)
        member.remove()
        made_containers.remove(member.name)
        net.remove()
        made_networks.remove(nname)
        assert nname not in [x.name for x in client.networks.list()]
        step("networks create/list/get/connect/disconnect/remove (%s)" % subnet)

        # --- stop / remove -------------------------------------------------------
        t = time.time()
        run.stop(timeout=2)
        assert time.time() - t < 30
        run.reload()
        assert run.status == "exited", run.status
        run.remove()
        made_containers.remove(run.name)
        try:
            client.containers.get(name("run"))
            raise AssertionError("container still there after remove")
        except docker.errors.NotFound:
            pass
        assert client.containers.list(all=True, filters={"name": name("run")}) == []
        step("stop/remove")

        # --- events ---------------------------------------------------------------
        until = int(time.time()) + 1
        time.sleep(1.1)
        events = list(client.events(decode=True, since=t0, until=until))
        mine = [
            e
            for e in events
            if e.get("Type") == "container"
            and e.get("Actor", {}).get("Attributes", {}).get("name") == name("run")
        ]
        actions = [e.get("Action", e.get("status")) for e in mine]
        for want in ("create", "start", "die", "destroy"):
            assert want in actions, (want, actions)
        # Docker reports `stop` as kill (signal=15), die, stop.
        for want in ("kill", "stop"):
            check(want in actions, "no %r event for a stopped container: %s" % (want, actions))
        for e in mine:
            assert e["Actor"]["ID"] == e["id"], e
            assert e["time"] >= t0, e
        net_actions = [
            e.get("Action")
            for e in events
            if e.get("Type") == "network"
            and e.get("Actor", {}).get("Attributes", {}).get("name") == nname
        ]
        assert "create" in net_actions, net_actions
        vol_actions = [
            e.get("Action") for e in events if e.get("Type") == "volume" and e["Actor"]["ID"] == vname
        ]
        assert "create" in vol_actions, vol_actions
        filtered = list(
            client.events(
                decode=True,
                since=t0,
                until=until,
                filters={"type": "container", "event": "start", "container": name("run")},
            )
        )
        assert len(filtered) == 1 and filtered[0]["Action"] == "start", filtered
        step("events: %d since start, %s for %s" % (len(events), actions, name("run")))
    finally:
        for c in made_containers:
            try:
                client.containers.get(c).remove(force=True)
            except Exception as e:  # noqa: BLE001
                print("cleanup: container %s: %s" % (c, e), file=sys.stderr)
        for n in made_networks:
            try:
                client.networks.get(n).remove()
            except Exception as e:  # noqa: BLE001
                print("cleanup: network %s: %s" % (n, e), file=sys.stderr)
        for vn in made_volumes:
            try:
                client.volumes.get(vn).remove(force=True)
            except Exception as e:  # noqa: BLE001
                print("cleanup: volume %s: %s" % (vn, e), file=sys.stderr)
        for i in made_images:
            try:
                client.images.remove(i, force=True)
            except Exception as e:  # noqa: BLE001
                print("cleanup: image %s: %s" % (i, e), file=sys.stderr)
        client.close()
    assert not MISMATCHES, "docker-py: %d mismatches:\n  %s" % (
        len(MISMATCHES),
        "\n  ".join(MISMATCHES),
    )
    print("docker-py: ok")


if __name__ == "__main__":
    main()
