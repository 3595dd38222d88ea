//! pull, push, login: berth against its own registry, Debian's docker-registry (with
//! htpasswd auth), skopeo, and a registry that sends wrong bytes.

mod common;

use common::{berth_registry, distribution, Berth};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Pushes, pulls back into an empty store and runs: the same image, the same digest.
fn round_trip(b: &Berth, host: &str) {
    let name = format!("{host}/team/bb:1");
    b.ok(&["tag", "busybox:test", &name]);
    let out = b.ok(&["push", &name]);
    assert!(
        out.contains("Pushed") && out.contains(": Preparing\n") && !out.contains("Pushing"),
        "{out}"
    );
    let digest = out
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_string();
    // What the registry has is not sent again.
    assert!(b.ok(&["push", &name]).contains("Layer already exists"));
    let id = b.inspect(&name, "{{.Id}}");
    // An empty store pulls it, verifies it and runs it.
    let other = Berth::new();
    let out = other.ok(&["pull", &name]);
    assert!(
        out.contains("Pull complete") && out.contains(&digest),
        "{out}"
    );
    // Not a terminal: a line per change of state, no bars, no cursor movement.
    assert!(
        out.contains(": Pulling fs layer\n")
            && out.contains(": Download complete\n")
            && !out.contains("Downloading")
            && !out.contains('\x1b'),
        "{out}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert_eq!(other.inspect(&name, "{{.Id}}"), id, "same image id");
    assert_eq!(
        other.ok(&["run", "--rm", &name, "echo", "pulled"]),
        "pulled\n"
    );
    assert_eq!(
        other.inspect(&name, "{{json .RepoDigests}}"),
        format!("[\"{host}/team/bb@{digest}\"]")
    );
    assert!(other.ok(&["pull", &name]).contains("Image is up to date"));
    // By digest, into a third store.
    let third = Berth::new();
    third.ok(&["pull", &format!("{host}/team/bb@{digest}")]);
    assert_eq!(
        third.inspect(&format!("{host}/team/bb@{digest}"), "{{.Id}}"),
        id
    );
    let (code, err) = other.fails(&["pull", &format!("{host}/team/nothing:1")]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn push_and_pull_through_berths_registry() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    round_trip(&b, &reg.host);
    // A second repository on the same registry gets the blobs by a mount.
    let second = format!("{}/elsewhere/bb:2", reg.host);
    b.ok(&["tag", "busybox:test", &second]);
    let out = b.ok(&["push", &second]);
    assert!(out.contains("Mounted from team/bb"), "{out}");
}

#[test]
fn push_and_pull_through_docker_registry_with_basic_auth() {
    require_root!();
    if std::process::Command::new("htpasswd")
        .arg("-h")
        .output()
        .is_err()
    {
        eprintln!("skipped: htpasswd (apache2-utils) not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let Some(reg) = distribution(Some(&htpasswd)) else {
        eprintln!("skipped: docker-registry not installed");
        return;
    };
    let b = Berth::with_busybox();
    let name = format!("{}/team/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    let (_, err) = b.fails(&["push", &name]);
    assert!(err.contains("authentication required"), "{err}");
    assert!(
        !b.login(&reg.host, "alice", "wrong").status.success(),
        "a wrong password is refused"
    );
    let out = b.login(&reg.host, "alice", "s3cret");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let cfg = std::fs::read_to_string(b.dir.path().join("docker/config.json")).unwrap();
    assert!(cfg.contains(&reg.host) && cfg.contains("auth"), "{cfg}");
    round_trip_with_login(&b, &reg.host);
    assert!(b
        .ok(&["logout", &reg.host])
        .contains("Removing login credentials"));
    let (_, err) = b.fails(&["push", &name]);
    assert!(err.contains("authentication required"), "{err}");
}

/// `round_trip`, but the pulling stores share the pusher's credentials.
fn round_trip_with_login(b: &Berth, host: &str) {
    let name = format!("{host}/team/bb:1");
    let out = b.ok(&["push", &name]);
    assert!(out.contains("Pushed"), "{out}");
    let id = b.inspect(&name, "{{.Id}}");
    b.ok(&["rmi", &name]);
    b.ok(&["rmi", "busybox:test"]);
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(b.inspect(&name, "{{.Id}}"), id);
    assert_eq!(b.ok(&["run", "--rm", &name, "echo", "ok"]), "ok\n");
}

#[test]
fn pull_chooses_the_platform_from_an_index() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let amd = format!("{}/multi:amd", reg.host);
    b.ok(&["tag", "busybox:test", &amd]);
    b.ok(&["push", &amd]);
    // A second image (another config) for the "arm64" entry.
    b.ok(&[
        "commit",
        "-c",
        "ENV WHICH=arm",
        &{
            let id = b.ok(&["create", "busybox:test", "true"]).trim().to_string();
            id
        },
        &format!("{}/multi:arm", reg.host),
    ]);
    b.ok(&["push", &format!("{}/multi:arm", reg.host)]);
    let c = reqwest::blocking::Client::new();
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let get = |tag: &str| {
        let r = c
            .get(format!("{}/v2/multi/manifests/{tag}", reg.base))
            .header("accept", accept)
            .send()
            .unwrap();
        r.bytes().unwrap().to_vec()
    };
    let (m_amd, m_arm) = (get("amd"), get("arm"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": accept, "digest": sha256(&m_arm), "size": m_arm.len(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": accept, "digest": sha256(&m_amd), "size": m_amd.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    let r = c
        .put(format!("{}/v2/multi/manifests/all", reg.base))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(serde_json::to_vec(&index).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let name = format!("{}/multi:all", reg.host);
    let other = Berth::new();
    other.ok(&["pull", "--platform", "linux/amd64", &name]);
    assert_eq!(other.inspect(&name, "{{.Id}}"), b.inspect(&amd, "{{.Id}}"));
    let third = Berth::new();
    third.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert!(third
        .inspect(&name, "{{json .Config.Env}}")
        .contains("WHICH=arm"));
    let (_, err) = Berth::new().fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x"),
        "{err}"
    );
}

/// A registry that serves a valid manifest and config but a layer whose bytes do not
/// match its digest: the pull fails, naming the blob, and nothing is stored.
/// A one-file uncompressed layer.
fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

/// The config and manifest of an image made of `layer`.
fn image_of(layer: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": layer.len()}],
    }))
    .unwrap();
    (config, manifest)
}

/// A registry of one image on a loopback port, whose answers `respond` writes: it gets
/// the request's head and the stream, and returns false to fall back to the plain
/// answer (the manifest, the config, or `layer` whole).
fn fake_registry(
    layer: Vec<u8>,
    respond: impl Fn(&str, &mut std::net::TcpStream) -> bool + Send + 'static,
) -> u16 {
    let (config, manifest) = image_of(&layer);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cd, ld) = (sha256(&config), sha256(&layer));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            if respond(&req, &mut s) {
                continue;
            }
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let (ct, body): (&str, &[u8]) = if path.contains("/manifests/") {
                ("application/vnd.oci.image.manifest.v1+json", &manifest)
            } else if path.ends_with(&cd) {
                ("application/octet-stream", &config)
            } else if path.ends_with(&ld) {
                ("application/octet-stream", &layer)
            } else {
                ("application/json", b"{}")
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    port
}

/// The names in a dir of the root, but for `skip`.
fn entries(dir: &std::path::Path, skip: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !skip.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_registry_sending_wrong_bytes_stores_nothing() {
    require_root!();
    // Both valid layers: the wrong one unpacks fine, and must still not be kept.
    let layer = tar_of("real", b"the real layer");
    let wrong = tar_of("evil", b"what the registry sends instead");
    let ld = sha256(&layer);
    let ld2 = ld.clone();
    let port = fake_registry(layer, move |req, s| {
        let path = req.split_whitespace().nth(1).unwrap_or("");
        if !path.ends_with(&ld2) {
            return false;
        }
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            wrong.len()
        );
        let _ = s.write_all(&wrong);
        true
    });
    let b = Berth::new();
    let (_, err) = b.fails(&["pull", &format!("127.0.0.1:{port}/evil:1")]);
    assert!(
        err.contains("does not match its digest") && err.contains(&ld),
        "{err}"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
    let unpacked = entries(&b.root.join("layers"), &["l", "tmp"]);
    assert!(unpacked.is_empty(), "no layer stays unpacked: {unpacked:?}");
    let stored = entries(&b.root.join("blobs/sha256"), &[]);
    assert!(
        !stored.iter().any(|n| ld.ends_with(n)),
        "the bad layer is not in the store: {stored:?}"
    );
    let partial = entries(&b.root.join("blobs/partial"), &[]);
    assert!(
        partial.is_empty(),
        "no partial download is kept: {partial:?}"
    );
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    require_root!();
    // 3 MiB that do not compress, cut after 1 MiB on the first try.
    let mut data = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let layer = tar_of("big", &data);
    let ld = sha256(&layer);
    let (ld2, body) = (ld.clone(), layer.clone());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<usize>>::new()));
    let asked2 = asked.clone();
    let port = fake_registry(layer, move |req, s| {
        let path = req.split_whitespace().nth(1).unwrap_or("");
        if !path.ends_with(&ld2) {
            return false;
        }
        let range = req
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")
                    .map(String::from)
            })
            .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
        let first = {
            let mut a = asked2.lock().unwrap();
            a.push(range);
            a.len() == 1
        };
        if first {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body[..1 << 20]);
            let _ = s.flush();
            let _ = s.shutdown(std::net::Shutdown::Both);
            return true;
        }
        let from = range.unwrap_or(0);
        let head = match range {
            Some(_) => format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
            None => "HTTP/1.1 200 OK\r\n".to_string(),
        };
        let _ = write!(
            s,
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len() - from
        );
        let _ = s.write_all(&body[from..]);
        true
    });
    let b = Berth::new();
    let image = format!("127.0.0.1:{port}/big:1");
    let (_, err) = b.fails(&["pull", &image]);
    assert!(err.contains("the next pull resumes"), "{err}");
    assert_eq!(b.ok(&["images", "-q"]), "", "nothing half-pulled is listed");
    let out = b.ok(&["pull", &image]);
    assert!(out.contains("Resuming at"), "{out}");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let from = asked[1].expect("the second request asks for a range");
    assert!(from > 0 && from <= 1 << 20, "resumed from {from}");
    // What was unpacked is the whole layer, and nothing is left over.
    b.ok(&["create", "--name", "cc", &image, "/none"]);
    let copy = b.root.join("copy");
    b.ok(&["cp", "cc:/big", copy.to_str().unwrap()]);
    assert!(std::fs::read(&copy).unwrap() == data, "the file is whole");
    let partial = entries(&b.root.join("blobs/partial"), &[]);
    assert!(partial.is_empty(), "{partial:?}");
    assert!(b
        .root
        .join("blobs/sha256")
        .join(ld.trim_start_matches("sha256:"))
        .exists());
}

#[test]
fn skopeo_copies_to_and_from_berths_registry_and_agrees_on_digests() {
    require_root!();
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: skopeo not installed");
        return;
    }
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let name = format!("{}/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    let out = b.ok(&["push", &name]);
    let digest = out
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let skopeo = |args: &[&str]| {
        let o = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let v: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:bb", dir.path().join("layout").display());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &layout,
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &layout,
        &format!("docker://{}/copied:1", reg.host),
    ]);
    let other = Berth::new();
    other.ok(&["pull", &format!("{}/copied:1", reg.host)]);
    assert_eq!(
        other.ok(&[
            "run",
            "--rm",
            &format!("{}/copied:1", reg.host),
            "echo",
            "via skopeo"
        ]),
        "via skopeo\n"
    );
}

/// berth's registry with htpasswd users and per-repository rules, through the Bearer
/// token flow Docker Hub uses (berth's client, and skopeo's).
#[test]
fn berths_registry_checks_users_and_rules_through_tokens() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    if !common::htpasswd(&htpasswd, &[("alice", "alice-pw"), ("bob", "bob-pw")]) {
        eprintln!("skipped: htpasswd (apache2-utils) not installed");
        return;
    }
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        r#"
[[access]]
users = ["alice"]
repositories = ["*"]
actions = ["pull", "push", "delete"]

[[access]]
users = ["bob"]
repositories = ["team/*"]
actions = ["pull"]

[[access]]
users = ["anonymous"]
repositories = ["public/*"]
actions = ["pull"]
"#,
    )
    .unwrap();
    let reg = berth_registry(&[
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let alice = Berth::with_busybox();
    let team = format!("{}/team/bb:1", reg.host);
    let public = format!("{}/public/bb:1", reg.host);
    alice.ok(&["tag", "busybox:test", &team]);
    alice.ok(&["tag", "busybox:test", &public]);
    let (_, err) = alice.fails(&["push", &team]);
    assert!(err.contains("authentication required"), "{err}");
    let out = alice.login(&reg.host, "alice", "wrong");
    assert!(!out.status.success(), "a wrong password is refused");
    let out = alice.login(&reg.host, "alice", "alice-pw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alice.ok(&["push", &team]);
    alice.ok(&["push", &public]);
    // Anonymous: public pulls only.
    let anon = Berth::new();
    anon.ok(&["pull", &public]);
    let (_, err) = anon.fails(&["pull", &team]);
    assert!(err.contains("authentication required"), "{err}");
    // bob: pulls team/*, may not push.
    let bob = Berth::with_busybox();
    assert!(bob.login(&reg.host, "bob", "bob-pw").status.success());
    bob.ok(&["pull", &team]);
    bob.ok(&["tag", "busybox:test", &format!("{}/team/bob:1", reg.host)]);
    let (_, err) = bob.fails(&["push", &format!("{}/team/bob:1", reg.host)]);
    assert!(err.contains("denied"), "{err}");
    // The web page shows each visitor what they may pull, and asks anonymous visitors
    // to log in for the rest.
    let c = reqwest::blocking::Client::new();
    let home = c
        .get(format!("{}/", reg.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        home.contains("public/bb") && !home.contains("team/bb"),
        "{home}"
    );
    let r = c.get(format!("{}/ui/r/team/bb", reg.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let home = c
        .get(format!("{}/", reg.base))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        home.contains("team/bb") && !home.contains("public/bb"),
        "{home}"
    );
    // skopeo speaks the same token flow.
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok()
    {
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "bob:bob-pw",
                &format!("docker://{team}"),
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                "bob:nope",
                &format!("docker://{team}"),
            ])
            .output()
            .unwrap();
        assert!(!o.status.success(), "skopeo with a wrong password");
    }
}

/// `registry serve --tls-cert/--tls-key`; berth trusts it through
/// `$BERTH_CERTS_DIR/HOST/ca.crt`, and refuses it without.
#[test]
fn berths_registry_serves_tls_and_the_client_verifies_it() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let made = common::make_test_certs(dir.path());
    if !made {
        eprintln!("skipped: openssl could not make a test certificate");
        return;
    }
    let reg = berth_registry(&[
        "--tls-cert",
        &p("server.crt"),
        "--tls-key",
        &p("server.key"),
    ]);
    assert!(reg.base.starts_with("https://"), "{}", reg.base);
    let certs = dir.path().join("certs.d");
    let b = Berth::with_busybox();
    let name = format!("{}/tls/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    // Without the CA: the certificate is not trusted (and plain HTTP is not tried).
    std::fs::create_dir_all(certs.join(&reg.host)).unwrap();
    std::fs::write(certs.join(&reg.host).join("ca.crt"), b"").unwrap();
    let out = b
        .cmd()
        .env("BERTH_CERTS_DIR", &certs)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown CA is refused");
    std::fs::copy(p("ca.crt"), certs.join(&reg.host).join("ca.crt")).unwrap();
    let out = b
        .cmd()
        .env("BERTH_CERTS_DIR", &certs)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = Berth::new();
    let out = other
        .cmd()
        .env("BERTH_CERTS_DIR", &certs)
        .args(["pull", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pull over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(other.ok(&["run", "--rm", &name, "echo", "tls"]), "tls\n");
}

/// `search HOST/TERM` asks the registry's search API; berth's registry has one,
/// docker-registry does not, which berth says.
#[test]
fn search_lists_matching_repositories_where_the_registry_can() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    for name in ["team/web", "team/db", "tools/cli"] {
        let full = format!("{}/{name}:1", reg.host);
        b.ok(&["tag", "busybox:test", &full]);
        b.ok(&["push", &full]);
    }
    let out = b.ok(&["search", &format!("{}/team", reg.host)]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STARS"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(out.contains("team/web") && out.contains("team/db") && !out.contains("tools/cli"));
    let names = b.ok(&[
        "search",
        "--limit",
        "1",
        "--format",
        "{{.Name}}",
        &format!("{}/t", reg.host),
    ]);
    assert_eq!(names.lines().count(), 1, "{names}");
    if let Some(d) = distribution(None) {
        let (code, err) = b.fails(&["search", &format!("{}/team", d.host)]);
        assert_eq!(code, 1);
        assert!(err.contains("does not support search"), "{err}");
    }
}

/// `run` and `create` pull an image they do not have (`--pull missing`, Docker's
/// default); `--pull never` does not; `--pull always` checks the registry every time.
#[test]
fn run_pulls_a_missing_image_unless_told_not_to() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let name = format!("{}/auto/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    b.ok(&["push", &name]);
    let other = Berth::new();
    let (code, err) = other.fails(&["run", "--rm", "--pull", "never", &name, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image"), "{err}");
    let out = other.run(&["run", "--rm", &name, "echo", "auto"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "auto\n",
        "pull progress is not on stdout"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally")),
        "{err}"
    );
    assert!(err.contains("Downloaded newer image"), "{err}");
    let out = other.run(&["run", "--rm", "--pull", "always", &name, "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Image is up to date"));
    let third = Berth::new();
    third.ok(&["create", "--name", "made", &name, "true"]);
    assert_eq!(third.inspect("made", "{{.Config.Image}}"), name);
    let (code, err) = third.fails(&["run", "--pull", "sometimes", &name]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid pull option"), "{err}");
}

/// `push --all-tags` pushes every local tag of the repository; `pull --all-tags` pulls
/// every tag the registry lists; a tag with `-a` is refused, as Docker does.
#[test]
fn push_and_pull_all_tags_of_a_repository() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let repo = format!("{}/many/bb", reg.host);
    for t in ["1", "2", "latest"] {
        b.ok(&["tag", "busybox:test", &format!("{repo}:{t}")]);
    }
    b.ok(&["tag", "busybox:test", &format!("{}/other:1", reg.host)]);
    let out = b.ok(&["push", "--all-tags", &repo]);
    assert_eq!(out.matches("digest: sha256:").count(), 3, "{out}");
    let other = Berth::new();
    let out = other.ok(&["pull", "-a", &repo]);
    for t in ["1", "2", "latest"] {
        assert!(out.contains(&format!("{repo}:{t}")), "{out}");
    }
    assert_eq!(
        other
            .ok(&["images", "--format", "{{.Tag}}", &repo])
            .lines()
            .count(),
        3
    );
    let (_, err) = other.fails(&["pull", "-a", &format!("{repo}:1")]);
    assert!(err.contains("tag can't be used with --all-tags"), "{err}");
    let (_, err) = b.fails(&["push", "-a", &format!("{}/nothing", reg.host)]);
    assert!(err.contains("no such image"), "{err}");
}

/// `push --compression gzip|zstd` recompresses the layers (once: a second push reuses
/// them), pushes an OCI manifest naming the compressed layers, and the image pulls and
/// runs the same.
#[test]
fn push_recompresses_layers_with_gzip_or_zstd() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let id = b.inspect("busybox:test", "{{.Id}}");
    let c = reqwest::blocking::Client::new();
    for (algo, media, magic) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &[0x1f, 0x8b][..],
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &[0x28, 0xb5, 0x2f, 0xfd][..],
        ),
    ] {
        let name = format!("{}/packed/{algo}:1", reg.host);
        b.ok(&["tag", "busybox:test", &name]);
        let out = b.ok(&["push", "--compression", algo, &name]);
        assert!(out.contains("Pushed"), "{out}");
        let m: serde_json::Value = c
            .get(format!("{}/v2/packed/{algo}/manifests/1", reg.base))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        let layer = &m["layers"][0];
        assert_eq!(layer["mediaType"], media, "{m}");
        let blob = c
            .get(format!(
                "{}/v2/packed/{algo}/blobs/{}",
                reg.base,
                layer["digest"].as_str().unwrap()
            ))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert!(blob.starts_with(magic), "{algo} bytes");
        assert!(
            (blob.len() as u64)
                < b.inspect("busybox:test", "{{.Size}}")
                    .parse::<u64>()
                    .unwrap()
        );
        // Pushed again elsewhere: the same compressed layer, not made again.
        let again = format!("{}/packed/{algo}-again:1", reg.host);
        b.ok(&["tag", "busybox:test", &again]);
        b.ok(&["push", "--compression", algo, &again]);
        let m2: serde_json::Value = c
            .get(format!("{}/v2/packed/{algo}-again/manifests/1", reg.base))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        assert_eq!(m2["layers"][0]["digest"], layer["digest"]);
        let cache: Vec<_> = std::fs::read_dir(b.root.join("compressed").join(algo))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(cache.len(), 1, "one layer, compressed once and remembered");
        let other = Berth::new();
        other.ok(&["pull", &name]);
        assert_eq!(other.inspect(&name, "{{.Id}}"), id, "the same image");
        assert_eq!(
            other.ok(&["run", "--rm", &name, "echo", algo]),
            format!("{algo}\n")
        );
    }
    let (_, err) = b.fails(&[
        "push",
        "--compression",
        "lz4",
        &format!("{}/packed/gzip:1", reg.host),
    ]);
    assert!(err.contains("invalid --compression"), "{err}");
}
