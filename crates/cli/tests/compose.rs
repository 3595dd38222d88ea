//! `berth compose`: loading a project as Docker Compose does.

mod common;

use common::Berth;

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
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = b.cmd();
        c.current_dir(&dir).arg("compose").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_PROFILES");
        c.output().unwrap()
    };
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
    let out = run(&["up", "-d"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("berth compose up is not implemented yet")
    );
}
