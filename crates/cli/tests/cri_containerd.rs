//! Side by side: the same crictl scenario against berth's CRI service and a private
//! containerd (Debian's, with its built-in CRI plugin) gives the same observable results.
//! Where the two rightly differ (ids, addresses, times), each step records what both must
//! have in common instead (an address in the pod network's subnet, a timestamp that
//! parses).

mod common;

use common::containerd::{private_containerd, Setup};
use common::cri::{crictl_at, crictl_path, CgroupParent, CniNet, Cri, CNI_BIN};
use common::{berth_registry, Berth};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One engine under test.
struct Side {
    name: &'static str,
    endpoint: String,
    /// Where the scenario writes its configs; pods' logs go to `dir/logs`.
    dir: PathBuf,
    /// The pod network's subnet prefix (`10.251.N.`).
    subnet: String,
    /// The pods' cgroup parent, as kubelet's cgroupfs driver gives it.
    cgroup_parent: String,
}

impl Side {
    fn crictl(&self, args: &[&str]) -> (bool, String, String) {
        crictl_at(&self.endpoint, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.crictl(args);
        assert!(ok, "{}: crictl {args:?}: {err}", self.name);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {args:?}: {e}: {out}", self.name))
    }

    fn write(&self, name: &str, v: &Value) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p.display().to_string()
    }

    /// `crictl exec` (streaming): (success, stdout, the exit code crictl reports).
    fn exec(&self, id: &str, cmd: &[&str]) -> (bool, String, Option<i32>) {
        let mut args = vec!["exec", id];
        args.extend(cmd);
        let (ok, out, err) = self.crictl(&args);
        (ok, out, exit_code_in(&err))
    }
}

/// "command terminated with exit code N" (streaming exec) or "exited with N" (exec -s).
fn exit_code_in(err: &str) -> Option<i32> {
    ["exit code ", "exited with "].iter().find_map(|k| {
        let rest = &err[err.find(k)? + k.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

/// A device no container may use by default and that opening does nothing to, other
/// than /dev/kmsg: given read-only, opening it for writing must be denied.
fn second_device() -> Option<&'static str> {
    ["/dev/fuse", "/dev/loop-control"]
        .into_iter()
        .find(|d| Path::new(d).exists())
}

/// A container's status, reduced to what both engines must agree on.
fn container_status(v: &Value) -> Value {
    let s = &v["status"];
    json!({
        "name": s["metadata"]["name"],
        "state": s["state"],
        "exitCode": s["exitCode"],
        "reason": s["reason"],
        "labels": s["labels"],
        "annotations": s["annotations"],
        "started": s["startedAt"].as_str().is_some_and(|t| t != "0"),
        "finished": s["finishedAt"].as_str().is_some_and(|t| t != "0"),
    })
}

/// A container's mount table (`point type` lines) without what may rightly differ:
/// - /sys/fs/cgroup is a tmpfs under runc and a read-only bind of a skeleton dir in
///   berth's run root under berth (a tmpfs too on a host, where the run root is in /run;
///   the tests' run roots are in /tmp);
/// - runc also binds the `name=systemd` v1 hierarchy, which berth leaves out (the
///   container has no cgroup of its own there).
fn same_mounts(table: &str) -> String {
    table
        .lines()
        .filter(|l| !l.starts_with("/sys/fs/cgroup/systemd "))
        .map(|l| match l.split_once(' ') {
            Some(("/sys/fs/cgroup", _)) => "/sys/fs/cgroup (tmpfs or a bind)\n".to_string(),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// What kubelet sends for a container with the default proc mount (the CRI leaves these
/// to kubelet: containerd masks nothing it is not sent).
fn kubelet_paths() -> Value {
    json!({
        "masked_paths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/sys/firmware",
        ],
        "readonly_paths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ],
    })
}

/// The lines of a CRI log file as (stream, tag, text), sorted (stdout and stderr are
/// written by different pipes); each timestamp must be RFC 3339 with nanoseconds.
fn log_records(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (ts, stream, tag, rest) = (f.next(), f.next(), f.next(), f.next());
            let ts = ts.unwrap_or_default();
            assert!(
                ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{}: not an RFC 3339 time: {l:?}",
                path.display()
            );
            format!(
                "{} {} {}",
                stream.unwrap_or_default(),
                tag.unwrap_or_default(),
                rest.unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    lines
}

fn wait_for_state(side: &Side, id: &str, state: &str) {
    let reached = common::eventually(20, || {
        side.json(&["inspect", "-o", "json", id])["status"]["state"] == state
    });
    assert!(
        reached,
        "{}: container {id} never became {state}",
        side.name
    );
}

/// The scenario: a pod of three containers (a web server, a client sharing its localhost,
/// a job that fails), looked at through every crictl view, then stopped and removed.
/// Returns what each step showed.
fn scenario(side: &Side, image: &str) -> Vec<(String, Value)> {
    let mut seen: Vec<(String, Value)> = Vec::new();
    let logs = side.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod = side.write(
        "pod.json",
        &json!({
            "metadata": {"name": "side", "namespace": "default", "uid": "side-uid", "attempt": 1},
            "hostname": "side-0",
            "log_directory": logs,
            "labels": {"app": "side"},
            "annotations": {"note": "both"},
            "dns_config": {"servers": ["10.250.0.10"], "searches": ["svc.test"], "options": ["ndots:3"]},
            "linux": {
                "cgroup_parent": side.cgroup_parent,
                "sysctls": {"net.ipv4.ip_unprivileged_port_start": "81"},
            },
        }),
    );
    let ctr = |name: &str, command: Value, extra: Value| {
        let mut c = json!({
            "metadata": {"name": name},
            "image": {"image": image},
            "command": command,
            "log_path": format!("{name}.log"),
            "labels": {"role": name},
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        for (k, v) in kubelet_paths().as_object().unwrap() {
            c["linux"]["security_context"][k] = v.clone();
        }
        side.write(&format!("{name}.json"), &c)
    };
    let web = ctr(
        "web",
        json!(["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"]),
        json!({"envs": [{"key": "FOO", "value": "bar"}], "working_dir": "/tmp"}),
    );
    // Devices that are none of the defaults, opened for writing (which writes nothing):
    // /dev/kmsg as asked, and one more only for reading.
    let read_only = second_device().unwrap_or("/dev/kmsg");
    let client = ctr(
        "client",
        json!(["sleep", "3600"]),
        json!({"devices": [
            {"container_path": "/dev/xk", "host_path": "/dev/kmsg", "permissions": "rw"},
            {"container_path": "/dev/xr", "host_path": read_only, "permissions": "r"},
        ]}),
    );
    let job = ctr(
        "job",
        json!(["sh", "-c", "echo out-line; echo err-line >&2; exit 3"]),
        json!({}),
    );

    let data = side.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "from-the-host\n").unwrap();
    let locked = ctr(
        "locked",
        json!(["sleep", "3600"]),
        json!({
            "mounts": [{"container_path": "/data", "host_path": data, "readonly": true}],
            "linux": {"security_context": {
                "run_as_user": {"value": 1000},
                "readonly_rootfs": true,
                "no_new_privs": true,
                "capabilities": {"drop_capabilities": ["ALL"], "add_capabilities": ["CHOWN"]},
            }},
        }),
    );

    let pod_id = side.ok(&["runp", &pod]).trim().to_string();
    let status = side.json(&["inspectp", "-o", "json", &pod_id]);
    let s = &status["status"];
    let ip = s["network"]["ip"].as_str().unwrap_or_default();
    seen.push((
        "pod status after runp".into(),
        json!({
            "state": s["state"],
            "metadata": s["metadata"],
            "labels": s["labels"],
            "annotations": s["annotations"],
            "ip in the pod network": ip.starts_with(&side.subnet),
            "namespace options": s["linux"]["namespaces"]["options"],
        }),
    ));

    let id = |name: &str, file: &str| {
        let id = side.ok(&["create", &pod_id, file, &pod]).trim().to_string();
        assert_eq!(id.len(), 64, "{}: {name}: {id}", side.name);
        id
    };
    let web_id = id("web", &web);
    let client_id = id("client", &client);
    let job_id = id("job", &job);
    let locked_id = id("locked", &locked);
    seen.push((
        "a created container".into(),
        container_status(&side.json(&["inspect", "-o", "json", &job_id])),
    ));
    for c in [&web_id, &client_id, &job_id, &locked_id] {
        side.ok(&["start", c]);
    }
    wait_for_state(side, &job_id, "CONTAINER_EXITED");
    for c in [&web_id, &client_id, &locked_id] {
        wait_for_state(side, c, "CONTAINER_RUNNING");
    }

    let mut listed: Vec<Value> = side.json(&["ps", "-a", "-o", "json"])["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!({
                "name": c["metadata"]["name"],
                "state": c["state"],
                "labels": c["labels"],
                "pod": c["podSandboxId"] == pod_id.as_str(),
            })
        })
        .collect();
    listed.sort_by_key(|c| c["name"].to_string());
    seen.push(("crictl ps -a".into(), json!(listed)));
    let pods: Vec<Value> = side.json(&["pods", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"name": p["metadata"]["name"], "state": p["state"], "labels": p["labels"]}))
        .collect();
    seen.push(("crictl pods".into(), json!(pods)));

    // The pod's containers share its localhost, hostname, DNS and sysctls.
    // The defaults (capabilities, seccomp, mounts, environment, devices) and what a
    // security context changes are the same too.
    let status = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status";
    let mounts = "awk '{ print $2, $3 }' /proc/mounts | sort";
    let devices = "ls -ln /dev/xk /dev/xr | awk '{ print $1, $3, $4, $5, $6, $NF }'; \
                   (: > /dev/xk) 2>/dev/null && echo xk-opened || echo xk-denied; \
                   (: > /dev/xr) 2>/dev/null && echo xr-opened || echo xr-denied";
    let probes: [(&str, &str, &[&str]); 16] = [
        ("devices given", &client_id, &["sh", "-c", devices]),
        (
            "localhost is shared",
            &client_id,
            &["wget", "-qO-", "http://127.0.0.1:8080/"],
        ),
        ("hostname", &client_id, &["hostname"]),
        ("resolv.conf", &client_id, &["cat", "/etc/resolv.conf"]),
        (
            "a pod sysctl",
            &client_id,
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
        ),
        (
            "env and working dir",
            &web_id,
            &["sh", "-c", "echo $FOO; pwd"],
        ),
        ("user", &web_id, &["id"]),
        (
            "environment",
            &client_id,
            &["sh", "-c", "env | grep -v ^HOSTNAME= | sort"],
        ),
        ("default process status", &client_id, &["sh", "-c", status]),
        ("mounts", &client_id, &["sh", "-c", mounts]),
        ("devices", &client_id, &["ls", "/dev"]),
        ("a security context: user", &locked_id, &["id"]),
        (
            "a security context: status",
            &locked_id,
            &["sh", "-c", status],
        ),
        (
            "a read-only root",
            &locked_id,
            &["sh", "-c", "touch /x 2>&1; echo $?"],
        ),
        (
            "a read-only mount",
            &locked_id,
            &["sh", "-c", "cat /data/f; touch /data/g 2>&1; echo $?"],
        ),
        (
            "mounts with a security context",
            &locked_id,
            &["sh", "-c", mounts],
        ),
    ];
    for (step, c, cmd) in probes {
        let (ok, mut out, code) = side.exec(c, cmd);
        if step.starts_with("mounts") {
            out = same_mounts(&out);
        }
        seen.push((
            format!("exec: {step}"),
            json!({"ok": ok, "out": out, "code": code}),
        ));
    }
    let (ok, out, code) = side.exec(&client_id, &["sh", "-c", "echo before; exit 3"]);
    seen.push((
        "exec: an exit code".into(),
        json!({"ok": ok, "out": out, "code": code}),
    ));
    let (ok, _, err) = side.crictl(&["exec", "-s", &client_id, "sh", "-c", "exit 4"]);
    seen.push((
        "exec -s: an exit code".into(),
        json!({"ok": ok, "code": exit_code_in(&err)}),
    ));

    // The job that failed: its status and its log.
    seen.push((
        "an exited container".into(),
        container_status(&side.json(&["inspect", "-o", "json", &job_id])),
    ));
    let mut log = side
        .ok(&["logs", &job_id])
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let (_, _, err) = side.crictl(&["logs", &job_id]);
    // What the container wrote to stderr, without crictl's own warnings.
    log.extend(
        err.lines()
            .filter(|l| !l.starts_with("time=\""))
            .map(str::to_string),
    );
    log.sort();
    seen.push(("crictl logs".into(), json!(log)));
    seen.push((
        "the log file".into(),
        json!(log_records(&logs.join("job.log"))),
    ));

    // Stats for the running containers.
    let mut stats: Vec<Value> = side.json(&["stats", "-o", "json"])["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({
                "name": s["attributes"]["metadata"]["name"],
                "memory": s["memory"]["workingSetBytes"]["value"].as_str().is_some_and(|v| v != "0"),
                "cpu": s["cpu"]["usageCoreNanoSeconds"]["value"].as_str().is_some_and(|v| v != "0"),
            })
        })
        .collect();
    stats.sort_by_key(|s| s["name"].to_string());
    seen.push(("crictl stats".into(), json!(stats)));

    // A memory limit set on a running container reaches its cgroup.
    side.ok(&["update", "--memory", "67108864", &client_id]);
    let (_, out, _) = side.exec(
        &client_id,
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
    );
    seen.push(("update: the memory limit".into(), json!(out)));

    // A container stopped with a grace period; then the pod.
    side.ok(&["stop", "--timeout", "2", &web_id]);
    seen.push((
        "a stopped container".into(),
        container_status(&side.json(&["inspect", "-o", "json", &web_id])),
    ));
    side.ok(&["stopp", &pod_id]);
    let status = side.json(&["inspectp", "-o", "json", &pod_id]);
    seen.push((
        "pod state after stopp".into(),
        status["status"]["state"].clone(),
    ));
    let mut states: Vec<String> = side.json(&["ps", "-a", "-o", "json"])["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["metadata"]["name"], c["state"]))
        .collect();
    states.sort();
    seen.push(("containers after stopp".into(), json!(states)));

    // Unknown ids are errors; a removed pod is gone with its containers.
    let (ok, _, _) = side.crictl(&["inspect", "0123456789ab"]);
    seen.push(("inspect of an unknown id".into(), json!(ok)));
    side.ok(&["rmp", &pod_id]);
    seen.push((
        "after rmp".into(),
        json!({
            "pods": side.ok(&["pods", "-q"]).trim(),
            "containers": side.ok(&["ps", "-aq"]).trim(),
            "inspectp": side.crictl(&["inspectp", &pod_id]).0,
        }),
    ));
    seen
}

#[test]
fn the_same_crictl_scenario_gives_the_same_results_on_berth_and_containerd() {
    require_root!();
    if !crictl_path().exists() || !Path::new(CNI_BIN).join("bridge").exists() {
        eprintln!("skipped: needs crictl and Debian's containernetworking-plugins");
        return;
    }
    let b = Berth::with_busybox();
    let base = b.root.parent().unwrap().to_path_buf();
    // The image both engines pull, and containerd's sandbox image: a pause stand-in made
    // from the same busybox (nothing is downloaded).
    let reg = berth_registry(&[]);
    let image = format!("{}/side/bb:1", reg.host);
    let pause = format!("{}/side/pause:1", reg.host);
    b.ok(&["tag", "busybox:test", &image]);
    b.ok(&["push", &image]);
    let ctx = base.join("pause");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\n\
         RUN printf '#!/bin/sh\\ntrap \"exit 0\" TERM INT\\nwhile :; do sleep 1 & wait $!; done\\n' > /pause && chmod +x /pause\n\
         ENTRYPOINT [\"/pause\"]\n",
    )
    .unwrap();
    b.ok(&["build", "-q", "-t", &pause, ctx.to_str().unwrap()]);
    b.ok(&["push", &pause]);
    b.ok(&["rmi", &image]);

    // Dropped last: the services have stopped their pods by then.
    let pid = std::process::id();
    let berth_cg = CgroupParent(format!("/bt-side-{pid}-berth"));
    let cd_cg = CgroupParent(format!("/bt-side-{pid}-containerd"));
    let cd_base = base.join("containerd");
    std::fs::create_dir_all(&cd_base).unwrap();
    let _cd_net = CniNet::in_dir(&cd_base, 12, &[]);
    let Some(cd) = private_containerd(&Setup {
        sandbox_image: &pause,
        plain_http: &[&reg.host],
        cni_conf_dir: &cd_base.join("cni"),
    }) else {
        return;
    };
    let _b_net = CniNet::new(&b, 11);
    let cri = Cri::start(&b);
    let sides = [
        Side {
            name: "berth",
            endpoint: common::cri::endpoint_of(&cri),
            dir: base.join("scenario-berth"),
            subnet: "10.251.11.".into(),
            cgroup_parent: berth_cg.0.clone(),
        },
        Side {
            name: "containerd",
            endpoint: cd.endpoint.clone(),
            dir: cd_base.join("scenario"),
            subnet: "10.251.12.".into(),
            cgroup_parent: cd_cg.0.clone(),
        },
    ];
    let mut results = Vec::new();
    for side in &sides {
        std::fs::create_dir_all(&side.dir).unwrap();
        side.ok(&["pull", &image]);
        if side.name == "containerd" {
            side.ok(&["pull", &pause]);
        }
        results.push(scenario(side, &image));
    }
    let (berth, containerd) = (&results[0], &results[1]);
    // What the scenario sets up did happen (two engines broken alike would agree too).
    let step = |name: &str| &berth.iter().find(|(s, _)| s == name).unwrap().1;
    assert_eq!(step("exec: localhost is shared")["out"], "hello-from-web\n");
    assert_eq!(step("exec: hostname")["out"], "side-0\n");
    assert_eq!(step("exec: an exit code")["code"], 3);
    assert_eq!(step("exec -s: an exit code")["code"], 4);
    assert_eq!(step("an exited container")["exitCode"], 3);
    assert_eq!(step("update: the memory limit"), "67108864\n");
    let devices = step("exec: devices given");
    assert!(
        devices["out"]
            .as_str()
            .is_some_and(|o| o.ends_with(if second_device().is_some() {
                "xk-opened\nxr-denied\n"
            } else {
                // The same device twice: what one rule allows, the other has too.
                "xk-opened\nxr-opened\n"
            })),
        "{devices}"
    );
    assert!(step("exec: mounts")["out"]
        .as_str()
        .is_some_and(|m| m.contains("/proc/acpi tmpfs") && m.contains("/proc/sys proc")));
    assert!(step("exec: a read-only root")["out"]
        .as_str()
        .is_some_and(|o| o.contains("Read-only file system")));
    assert_eq!(berth.len(), containerd.len());
    let mut differ = Vec::new();
    for ((step, ours), (_, theirs)) in berth.iter().zip(containerd) {
        if ours != theirs {
            differ.push(format!(
                "{step}:\n  berth:      {ours}\n  containerd: {theirs}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "berth and containerd differ in {} steps:\n{}\ncontainerd's log:\n{}",
        differ.len(),
        differ.join("\n"),
        cd.log_tail(20)
    );
}
