//! The CRI validation suite that containerd and CRI-O run in their CI (critest, from the
//! shared CRI kit beside the checkout) against `berth cri`, offline: the kit's
//! `run-critest.sh` serves critest's images from a registry on a loopback port, which
//! berth uses as the mirror of `gcr.io`, `registry.k8s.io` and `k8s.gcr.io`.
//!
//! Every spec critest skips here and every spec that fails because of the kit (as it
//! does for containerd) is named below with its reason; anything else that does not
//! pass fails this test.

mod common;

use common::cri::{CniNet, Cri};
use common::Berth;
use std::path::Path;
use std::process::Command;

/// Specs critest skips on this host, by a part of their name, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "[k8s.io] NRI ",
        "berth has no NRI plugin support: critest finds no NRI socket",
    ),
    (
        " benchmark about ",
        "critest runs its benchmarks only with -benchmark",
    ),
    (
        "[k8s.io] Image Volume [Feature:ImageVolume]",
        "image volumes are not implemented yet in berth (CreateContainer answers UNIMPLEMENTED)",
    ),
    ("[k8s.io] AppArmor ", "AppArmor is off on this host"),
    (
        "[k8s.io] Security Context UserNamespaces ",
        "user namespaces for pods are not implemented yet in berth",
    ),
    (
        "[k8s.io] Security Context SupplementalGroupsPolicy ",
        "berth does not report the supplemental groups policy feature (it applies Merge)",
    ),
    (
        "runtime should support metrics operations",
        "ListMetricDescriptors and ListPodSandboxMetrics are not implemented yet in berth",
    ),
    (
        "[k8s.io] Container Mount Readonly runtime should support readonly mounts",
        "berth does not report recursive read-only mounts as a runtime handler feature",
    ),
];

/// Specs that fail because of the kit, not the runtime (containerd fails them too).
const KIT_FAILURES: &[(&str, &str)] = &[
    (
        "Image Manager public image with digest should be pulled and removed",
        "critest pins a digest that the kit's rebuilt image cannot have",
    ),
    (
        "Security Context bucket runtime should support MaskedPaths",
        "Debian's busybox-static runs its own ls, so masking /bin/ls is not observable",
    ),
];

fn kit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/cri")
}

/// The System V shared memory segments on the host (critest's HostIpc specs leave two).
fn shm_segments() -> Vec<String> {
    let out = Command::new("ipcs").args(["-m"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn critest_passes_but_for_the_named_skips_and_the_kits_own_failures() {
    require_root!();
    let script = kit().join("run-critest.sh");
    if !script.exists() {
        eprintln!("skipped: no CRI kit at {}", kit().display());
        return;
    }
    let registry_bin = ["/usr/bin/docker-registry", "/usr/bin/registry"];
    if !registry_bin.iter().any(|p| Path::new(p).exists())
        || !Path::new("/usr/lib/cni/portmap").exists()
    {
        eprintln!("skipped: critest needs docker-registry and containernetworking-plugins");
        return;
    }
    let b = Berth::new();
    let base = b.root.parent().unwrap().to_path_buf();
    let _net = CniNet::with_plugins(
        &b,
        9,
        &[serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}})],
    );
    let registry = format!("127.0.0.1:{}", common::free_port());
    let conf = base.join("berth.toml");
    let mirrors: String = ["gcr.io", "registry.k8s.io", "k8s.gcr.io"]
        .iter()
        .map(|r| {
            format!(
                "[[registry]]\nprefix = \"{r}\"\nlocation = \"{r}\"\n[[registry.mirror]]\nlocation = \"{registry}\"\ninsecure = true\n"
            )
        })
        .collect();
    std::fs::write(&conf, mirrors).unwrap();
    let cri = Cri::start_with(&b, &[("BERTH_CONFIG", &conf)]);
    let shm_before = shm_segments();
    let report = base.join("report");
    let out = Command::new("timeout")
        .arg("30m")
        .arg(&script)
        .arg(format!("unix://{}", cri.socket.display()))
        .arg(&report)
        .env("REGISTRY_ADDR", &registry)
        .output()
        .unwrap();
    // What critest's specs left: pods (the service's drop stops it, Berth's drop
    // unmounts), and the HostIpc specs' segments.
    let _ = cri.crictl(&["rmp", "-fa"]);
    for id in shm_segments() {
        if !shm_before.contains(&id) {
            let _ = Command::new("ipcrm").args(["-m", &id]).status();
        }
    }
    let summary = std::fs::read_to_string(report.join("summary.txt")).unwrap_or_else(|_| {
        panic!(
            "critest wrote no summary:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("critest: {}", summary.lines().next().unwrap_or(""));
    let mut unexpected = Vec::new();
    for line in summary.lines().skip(1) {
        let (known, kind): (&[(&str, &str)], &str) = if line.starts_with("FAILED") {
            (KIT_FAILURES, "failed")
        } else if line.starts_with("skipped") {
            (SKIPPED, "skipped")
        } else {
            continue;
        };
        match known.iter().find(|(part, _)| line.contains(part)) {
            Some((_, why)) => eprintln!("  {kind} (expected: {why}): {line}"),
            None => unexpected.push(line.to_string()),
        }
    }
    assert!(
        unexpected.is_empty(),
        "critest specs that neither passed nor are named with a reason:\n{}\n\nsee {}",
        unexpected.join("\n"),
        report.join("critest.log").display()
    );
    let passed: usize = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or(0);
    assert!(passed >= 90, "{summary}");
}
