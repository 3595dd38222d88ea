//! `berth compose`: loading a project as Docker Compose does.

mod common;

use common::Berth;
use std::path::Path;
use std::process::Output;

/// `berth compose ARGS` in project directory `dir` with `env` set, never with the
/// caller's `COMPOSE_*` variables.
fn compose_in(b: &Berth, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = b.cmd();
    c.current_dir(dir)
        .arg("compose")
        .args(args)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_PROFILES");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// [`compose_in`], which must succeed; its stdout.
fn compose_ok(b: &Berth, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = compose_in(b, dir, args, env);
    assert!(
        out.status.success(),
        "compose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn config_prints_the_resolved_project() {
    let b = Berth::new();
    let dir = b.root.parent().unwrap().join("Shop App");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        concat!(
            "x-common: &common\n",
            "  restart: unless-stopped\n",
            "services:\n",
            "  web:\n",
            "    <<: *common\n",
            "    image: \"busybox:${TAG:-latest}\"\n",
            "    command: [\"httpd\", \"-f\", \"-p\", \"${PORT}\"]\n",
            "  worker:\n",
            "    image: busybox\n",
            "    command: echo $$HOME\n",
            "    profiles: [jobs]\n",
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".env"), "PORT=8080\n").unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| compose_in(&b, &dir, args, env);
    let out = run(&["config"], &[("TAG", "1.36")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.starts_with("name: shopapp\n"), "{yaml}");
    assert!(yaml.contains("image: busybox:1.36"), "{yaml}");
    assert!(
        yaml.contains("- '8080'") || yaml.contains("- \"8080\"") || yaml.contains("- 8080"),
        "{yaml}"
    );
    assert!(yaml.contains("restart: unless-stopped"), "{yaml}");
    assert!(!yaml.contains("worker"), "inactive profile: {yaml}");
    let out = run(
        &["--profile", "jobs", "-p", "other", "config", "--services"],
        &[],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\nworker\n");
    let out = run(&["config", "--format", "json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["web"]["image"], "busybox:latest");

    // Bad input: one line naming the file and the key, exit 1.
    std::fs::write(
        dir.join("bad.yaml"),
        "services:\n  db:\n    image: \"pg:${PG:?set PG first}\"\n",
    )
    .unwrap();
    let out = run(&["-f", "bad.yaml", "config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "bad.yaml: services.db.image: required variable PG is missing a value: set PG first"
        ),
        "{err}"
    );
    // What is not built yet says so.
    std::fs::write(
        dir.join("later.yaml"),
        "services:\n  web:\n    image: busybox\n    deploy:\n      placement:\n        constraints: [node.role==manager]\n",
    )
    .unwrap();
    let out = run(&["-f", "later.yaml", "up", "-d"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.web.deploy.placement: not implemented yet in berth compose"),
        "{err}"
    );
}

/// A service as both tools' `config` describe it, reduced to what both print the same
/// way once their forms are undone.
#[derive(Debug, PartialEq, Default)]
struct Service {
    image: Option<String>,
    build_context: Option<String>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    environment: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// (host IP, target, published, protocol)
    ports: BTreeSet<(String, String, String, String)>,
    /// (source, target, read-only)
    volumes: BTreeSet<(String, String, bool)>,
    depends_on: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    aliases: BTreeSet<String>,
    scalars: BTreeMap<String, String>,
}

use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_norway::to_string(other).unwrap(),
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| m.iter().map(|(k, v)| (text(k), text(v))).collect())
        .unwrap_or_default()
}

/// `docker-compose` 1.29 writes `$` as `$$` and keeps shell-form commands as strings.
fn words(v: Option<&Value>, v1: bool) -> Option<Vec<String>> {
    let undo = |s: String| if v1 { s.replace("$$", "$") } else { s };
    match v? {
        Value::String(s) => Some(shlex::split(&undo(s.clone())).unwrap()),
        Value::Sequence(items) => Some(items.iter().map(|i| undo(text(i))).collect()),
        _ => None,
    }
}

fn service(v: &Value, v1: bool) -> Service {
    let mut s = Service {
        image: v.get("image").map(text),
        build_context: v
            .get("build")
            .map(|b| b.get("context").map(text).unwrap_or_else(|| text(b))),
        command: words(v.get("command"), v1),
        entrypoint: words(v.get("entrypoint"), v1),
        environment: string_map(v.get("environment")),
        labels: string_map(v.get("labels")),
        ..Default::default()
    };
    for p in v
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        s.ports.insert(match p {
            Value::Mapping(_) => (
                p.get("host_ip").map(text).unwrap_or_default(),
                p.get("target").map(text).unwrap_or_default(),
                p.get("published").map(text).unwrap_or_default(),
                p.get("protocol").map(text).unwrap_or_else(|| "tcp".into()),
            ),
            short => {
                // 1.29's short form for ports with a host address: IP:PUBLISHED:TARGET/PROTO
                let t = text(short);
                let (rest, proto) = t.rsplit_once('/').unwrap_or((&t, "tcp"));
                let f: Vec<&str> = rest.split(':').collect();
                (f[0].into(), f[2].into(), f[1].into(), proto.into())
            }
        });
    }
    for m in v
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        s.volumes.insert(match m {
            Value::Mapping(_) => (
                m.get("source").map(text).unwrap_or_default(),
                m.get("target").map(text).unwrap_or_default(),
                m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            ),
            short => {
                let t = text(short);
                let f: Vec<&str> = t.split(':').collect();
                match f.as_slice() {
                    [target] => (String::new(), target.to_string(), false),
                    [src, target] => (src.to_string(), target.to_string(), false),
                    [src, target, mode] => {
                        (src.to_string(), target.to_string(), mode.contains("ro"))
                    }
                    _ => panic!("volume {t}"),
                }
            }
        });
    }
    for (k, d) in v
        .get("depends_on")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        s.depends_on
            .insert(text(k), d.get("condition").map(text).unwrap_or_default());
    }
    match v.get("networks").and_then(Value::as_mapping) {
        Some(m) => {
            for (k, n) in m {
                s.networks.insert(text(k));
                for a in n
                    .get("aliases")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    s.aliases.insert(text(a));
                }
            }
        }
        None if v.get("network_mode").is_none() => {
            s.networks.insert("default".into());
        }
        None => {}
    }
    for k in [
        "working_dir",
        "user",
        "restart",
        "hostname",
        "read_only",
        "network_mode",
    ] {
        if let Some(x) = v.get(k) {
            s.scalars.insert(k.into(), text(x));
        }
    }
    if let Some(t) = v.get("healthcheck").and_then(|h| h.get("test")) {
        s.scalars.insert("healthcheck.test".into(), text(t));
    }
    s
}

#[test]
fn config_agrees_with_docker_compose_1_29() {
    let Some(compose) = ["/usr/bin/docker-compose", "/usr/local/bin/docker-compose"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("skipped: no docker-compose (apt-get install docker-compose)");
        return;
    };
    let b = Berth::new();
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "rich",
            &[(
                "docker-compose.yml",
                concat!(
                    "version: \"3.8\"\n",
                    "services:\n  web:\n    build: ./web\n    image: \"shop/web:${TAG:-dev}\"\n",
                    "    command: sh -c 'httpd -f -p 8080 && echo $$HOME'\n",
                    "    entrypoint: [\"/bin/init\", \"--\"]\n",
                    "    environment: [MODE=prod, EMPTY=]\n    labels: [a.b=c]\n",
                    "    ports: [\"8080:80\", \"127.0.0.1:5353:53/udp\", \"9000-9001:90-91\", \"7000\"]\n",
                    "    volumes: [\"./site:/site:ro\", \"data:/data\", \"/anon\"]\n",
                    "    depends_on: [cache]\n    networks: [front, back]\n",
                    "    working_dir: /srv\n    user: \"1000:1000\"\n    restart: unless-stopped\n",
                    "  cache:\n    image: kv:1\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n",
                    "    networks:\n      back:\n        aliases: [kv]\n",
                    "networks:\n  front:\n  back:\nvolumes:\n  data:\n",
                ),
            )],
        ),
        (
            "anchors",
            &[
                (
                    "docker-compose.yml",
                    concat!(
                        "version: \"3.8\"\n",
                        "x-base: &base\n  restart: always\n  environment:\n    LEVEL: ${LEVEL:-info}\n    REGION: ${REGION}\n",
                        "services:\n  a:\n    <<: *base\n    image: busybox\n",
                        "  b:\n    <<: *base\n    image: busybox\n    restart: \"no\"\n    command: [\"echo\", \"${GREETING-hi}\"]\n",
                    ),
                ),
                (".env", "REGION=eu\nGREETING=hello there\n"),
            ],
        ),
        (
            "override",
            &[
                (
                    "docker-compose.yml",
                    concat!(
                        "version: \"3.8\"\n",
                        "services:\n  web:\n    image: web:1\n    command: serve\n",
                        "    ports: [\"8080:80\"]\n    environment: [A=1, B=2]\n    volumes: [./site:/site]\n",
                    ),
                ),
                (
                    "docker-compose.override.yml",
                    concat!(
                        "version: \"3.8\"\n",
                        "services:\n  web:\n    command: serve --debug\n    ports: [\"9090:90\"]\n",
                        "    environment:\n      B: changed\n    volumes: [./other:/site]\n",
                        "  cache:\n    image: kv\n",
                    ),
                ),
            ],
        ),
    ];
    for (name, files) in cases {
        let dir = b.root.parent().unwrap().join(name);
        std::fs::create_dir_all(dir.join("web")).unwrap();
        for (f, body) in files {
            std::fs::write(dir.join(f), body).unwrap();
        }
        let v1 = std::process::Command::new(compose)
            .arg("config")
            .current_dir(&dir)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .unwrap();
        assert!(
            v1.status.success(),
            "{name}: docker-compose: {}",
            String::from_utf8_lossy(&v1.stderr)
        );
        let ours = b
            .cmd()
            .args(["compose", "config"])
            .current_dir(&dir)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "{name}: berth: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let theirs: Value = serde_norway::from_slice(&v1.stdout).unwrap();
        let mine: Value = serde_norway::from_slice(&ours.stdout).unwrap();
        let names = |m: &Value| -> BTreeSet<String> {
            m["services"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(text)
                .collect()
        };
        assert_eq!(names(&mine), names(&theirs), "{name}: services");
        for svc in names(&theirs) {
            assert_eq!(
                service(&mine["services"][svc.as_str()], false),
                service(&theirs["services"][svc.as_str()], true),
                "{name}: service {svc}"
            );
        }
    }
}

/// The application the compose tests bring up: a web server that serves what is in a
/// volume, a key-value service (busybox httpd over a file) reached by name, and three
/// workers that wait for it to be healthy, fetch a value by name and write it into the
/// web server's volume.
const SHOP: &str = concat!(
    "services:\n",
    "  web:\n",
    "    image: busybox:test\n",
    "    command: httpd -f -p 80 -h /site\n",
    "    volumes: [content:/site:ro]\n",
    "    ports: [\"127.0.0.1:${WEB_PORT}:80\"]\n",
    "    environment:\n      EDITION: ${EDITION:-first}\n",
    "    secrets: [motd]\n",
    "    deploy:\n      resources:\n        limits: {memory: 64M}\n",
    "  kv:\n",
    "    image: busybox:test\n",
    "    command: sh -c 'mkdir -p /kv && echo stored-in-kv > /kv/greeting && httpd -f -p 8000 -h /kv'\n",
    "    healthcheck:\n",
    "      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8000/greeting\"]\n",
    "      interval: 1s\n",
    "      retries: 10\n",
    "  worker:\n",
    "    image: busybox:test\n",
    "    command: sh -c 'wget -qO /out/index.html http://kv:8000/greeting && sleep 1000'\n",
    "    volumes: [content:/out]\n",
    "    depends_on:\n      kv:\n        condition: service_healthy\n",
    "    scale: 3\n",
    "volumes:\n  content:\n",
    "secrets:\n  motd:\n    file: ./motd.txt\n",
);

#[test]
fn up_reconciles_a_project_and_down_removes_it() {
    require_root!();
    let b = Berth::with_busybox();
    let dir = b.root.parent().unwrap().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), SHOP).unwrap();
    std::fs::write(dir.join("motd.txt"), "a secret\n").unwrap();
    let port = common::free_port();
    let compose = |args: &[&str], env: &[(&str, &str)]| {
        let mut all: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(("WEB_PORT".into(), port.to_string()));
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        compose_in(&b, &dir, args, &refs)
    };
    let ok = |args: &[&str], env: &[(&str, &str)]| {
        let out = compose(args, env);
        assert!(
            out.status.success(),
            "compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["up", "-d"], &[]);
    let ps = ok(&["ps", "--format", "json"], &[]);
    let rows: Vec<serde_json::Value> = ps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "shop-kv-1",
            "shop-web-1",
            "shop-worker-1",
            "shop-worker-2",
            "shop-worker-3"
        ]
    );
    assert!(rows.iter().all(|r| r["State"] == "running"), "{ps}");
    // The workers fetched from kv by name into the volume the web server serves.
    assert!(
        common::eventually(10, || common::http_get(port).as_deref()
            == Some("stored-in-kv\n")),
        "the web server never served the kv value: {:?}",
        common::http_get(port)
    );
    let ids = |out: &str| -> Vec<(String, String)> {
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["Name"].as_str().unwrap().to_string(),
                    v["ID"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let before = ids(&ps);
    // The secret is a read-only file; the memory limit is the service's.
    assert_eq!(
        ok(&["exec", "-T", "web", "cat", "/run/secrets/motd"], &[]),
        "a secret\n"
    );
    assert_eq!(
        b.inspect("shop-web-1", "{{.HostConfig.Memory}}"),
        "67108864"
    );

    // Nothing changed: nothing recreated.
    ok(&["up", "-d"], &[]);
    assert_eq!(ids(&ok(&["ps", "--format", "json"], &[])), before);
    // web's definition changed: only web is recreated.
    ok(&["up", "-d"], &[("EDITION", "second")]);
    let after = ids(&ok(&["ps", "--format", "json"], &[]));
    for ((name, old), (name2, new)) in before.iter().zip(&after) {
        assert_eq!(name, name2);
        assert_eq!(old == new, name != "shop-web-1", "{name}");
    }
    assert_eq!(
        b.inspect(
            "shop-web-1",
            "{{index .Config.Labels \"com.docker.compose.service\"}}"
        ),
        "web"
    );

    // down: containers, the network and (with -v) the volume go.
    ok(&["down", "-v"], &[]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(!b.ok(&["network", "ls"]).contains("shop_default"));
    assert!(!b.ok(&["volume", "ls"]).contains("shop_content"));
}

#[test]
fn a_failed_up_is_cleaned_by_down_and_bad_projects_make_nothing() {
    require_root!();
    let b = Berth::with_busybox();
    let dir = b.root.parent().unwrap().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let compose = |args: &[&str]| compose_in(&b, &dir, args, &[]);
    // A cycle: refused before anything is made.
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  a:\n    image: busybox:test\n    depends_on: [b]\n  b:\n    image: busybox:test\n    depends_on: [a]\n",
    )
    .unwrap();
    let out = compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dependency cycle detected: a -> b -> a"),
        "{err}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(!b.ok(&["network", "ls"]).contains("broken_default"));
    // A service that cannot start: up fails naming it; down cleans all of it.
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  fine:\n    image: busybox:test\n    command: sleep 1000\n  bad:\n    image: busybox:test\n    command: no-such-program\n    depends_on: [fine]\n",
    )
    .unwrap();
    let out = compose(&["up", "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-program"), "{err}");
    compose_ok(&b, &dir, &["down"], &[]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(!b.ok(&["network", "ls"]).contains("broken_default"));
}

#[test]
fn service_commands_act_on_the_projects_containers() {
    require_root!();
    let b = Berth::with_busybox();
    let dir = b.root.parent().unwrap().join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        concat!(
            "services:\n",
            "  talker:\n    image: busybox:test\n    command: sh -c 'echo hello from talker; sleep 1000'\n",
            "  server:\n    image: busybox:test\n    command: sh -c 'echo serving; sleep 1000'\n",
            "    ports: [\"127.0.0.1::8080\"]\n",
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| compose_in(&b, &dir, args, &[]);
    let ok = |args: &[&str]| compose_ok(&b, &dir, args, &[]);
    ok(&["up", "-d"]);
    // logs: every container's lines, prefixed with its name.
    assert!(common::eventually(5, || {
        let logs = ok(&["logs", "--no-color"]);
        logs.contains("tools-talker-1  | hello from talker")
            && logs.contains("tools-server-1  | serving")
    }));
    let only = ok(&["logs", "--no-log-prefix", "talker"]);
    assert_eq!(only, "hello from talker\n");
    assert_eq!(ok(&["exec", "-T", "talker", "echo", "inside"]), "inside\n");
    let port = ok(&["port", "server", "8080"]);
    assert!(port.trim().starts_with("127.0.0.1:"), "{port}");
    let listed = ok(&["ls"]);
    assert!(
        listed.contains("tools") && listed.contains("running(2)"),
        "{listed}"
    );
    // One-off containers: the command given, not a replica, gone with --rm.
    assert_eq!(
        ok(&["run", "--rm", "-T", "talker", "echo", "one-off"]),
        "one-off\n"
    );
    assert!(!b
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .contains("-run-"));
    // `run -e NAME` takes NAME's value from here, and leaves it out when it is unset.
    let greeting = compose_ok(
        &b,
        &dir,
        &[
            "run",
            "--rm",
            "-T",
            "-e",
            "GREETING",
            "-e",
            "BERTH_SURELY_UNSET_Y",
            "talker",
            "sh",
            "-c",
            "echo ${GREETING}-${BERTH_SURELY_UNSET_Y-unset}",
        ],
        &[("GREETING", "hi")],
    );
    assert_eq!(greeting, "hi-unset\n");
    ok(&[
        "run",
        "-d",
        "--name",
        "tools-extra",
        "talker",
        "sleep",
        "100",
    ]);
    assert_eq!(
        b.inspect(
            "tools-extra",
            "{{index .Config.Labels \"com.docker.compose.oneoff\"}}"
        ),
        "True"
    );
    let ps = ok(&["ps", "--services"]);
    assert_eq!(ps, "server\ntalker\n");
    b.ok(&["rm", "-f", "tools-extra"]);
    assert!(ok(&["top", "talker"]).contains("sleep 1000"));
    assert!(ok(&["images"]).contains("busybox"));
    ok(&["stop", "talker"]);
    assert_eq!(b.inspect("tools-talker-1", "{{.State.Status}}"), "exited");
    ok(&["start", "talker"]);
    assert_eq!(b.inspect("tools-talker-1", "{{.State.Status}}"), "running");
    ok(&["kill", "server"]);
    assert!(common::eventually(5, || b
        .inspect("tools-server-1", "{{.State.Status}}")
        == "exited"));
    ok(&["rm", "-f"]);
    assert!(b.run(&["inspect", "tools-server-1"]).status.code() != Some(0));
    let out = compose(&["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such service: nosuch"), "{err}");
    ok(&["down"]);

    // Attached: the logs until one container exits, then the others are stopped.
    std::fs::write(
        dir.join("compose.yaml"),
        concat!(
            "services:\n",
            "  once:\n    image: busybox:test\n    command: sh -c 'sleep 1; echo done'\n",
            "  forever:\n    image: busybox:test\n    command: sh -c 'trap \"exit 0\" TERM; sleep 1000 & wait'\n",
        ),
    )
    .unwrap();
    let out = ok(&["up", "--abort-on-container-exit", "--no-color"]);
    assert!(out.contains("tools-once-1     | done"), "{out}");
    assert_eq!(b.inspect("tools-forever-1", "{{.State.Status}}"), "exited");
    ok(&["down"]);
}

#[test]
fn services_with_a_build_are_built_and_recreated_when_their_image_changes() {
    require_root!();
    let b = Berth::with_busybox();
    let dir = b.root.parent().unwrap().join("built");
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        concat!(
            "services:\n  api:\n    build:\n      context: ./api\n      args: {EDITION: one}\n",
            "    command: sh -c 'cat /edition; sleep 1000'\n",
        ),
    )
    .unwrap();
    let dockerfile = |extra: &str| {
        std::fs::write(
            dir.join("api/Dockerfile"),
            format!("FROM busybox:test\nARG EDITION\nRUN echo $EDITION{extra} > /edition\n"),
        )
        .unwrap()
    };
    dockerfile("");
    let compose = |args: &[&str]| compose_ok(&b, &dir, args, &[]);
    // The image is missing: up builds it, named after the project and service.
    compose(&["up", "-d"]);
    assert!(b
        .ok(&["images", "--format", "{{.Repository}}"])
        .contains("built-api"));
    assert!(common::eventually(5, || compose(&[
        "logs",
        "--no-log-prefix"
    ]) == "one\n"));
    let first = b.inspect("built-api-1", "{{.Id}}");
    // Nothing changed: no build, no new container.
    compose(&["up", "-d"]);
    assert_eq!(b.inspect("built-api-1", "{{.Id}}"), first);
    // The Dockerfile changed: up --build makes a new image, and so a new container.
    dockerfile("-two");
    compose(&["up", "-d", "--build"]);
    let second = b.inspect("built-api-1", "{{.Id}}");
    assert_ne!(second, first);
    assert!(common::eventually(5, || compose(&[
        "logs",
        "--no-log-prefix"
    ]) == "one-two\n"));
    compose(&["build", "-q"]);
    // down --rmi local: the image compose named goes, the base stays.
    compose(&["down", "--rmi", "local"]);
    let images = b.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("built-api"), "{images}");
    assert!(images.contains("busybox"), "{images}");
}

#[test]
fn dependents_that_ask_are_restarted_when_their_dependency_is_recreated() {
    require_root!();
    let b = Berth::with_busybox();
    let dir = b.root.parent().unwrap().join("deps");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        concat!(
            "services:\n",
            "  db:\n    image: busybox:test\n    command: sleep 1000\n",
            "    environment:\n      EDITION: ${EDITION:-one}\n",
            "  app:\n    image: busybox:test\n    command: sh -c 'trap \"exit 0\" TERM; sleep 1000 & wait'\n",
            "    depends_on:\n      db:\n        condition: service_started\n        restart: true\n",
            "  other:\n    image: busybox:test\n    command: sleep 1000\n    depends_on: [db]\n",
        ),
    )
    .unwrap();
    compose_ok(&b, &dir, &["up", "-d"], &[]);
    let started = |name: &str| b.inspect(name, "{{.State.StartedAt}}");
    let (app_id, app_started, other_started) = (
        b.inspect("deps-app-1", "{{.Id}}"),
        started("deps-app-1"),
        started("deps-other-1"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = compose_in(&b, &dir, &["up", "-d"], &[("EDITION", "two")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("deps-app-1  Restarted"), "{err}");
    // The same container, started again; the one that did not ask, left alone.
    assert_eq!(b.inspect("deps-app-1", "{{.Id}}"), app_id);
    assert_ne!(started("deps-app-1"), app_started);
    assert_eq!(started("deps-other-1"), other_started);
    compose_ok(&b, &dir, &["down", "-t", "0"], &[]);
}
