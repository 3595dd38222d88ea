#[test]
fn unsupported_architectures_can_be_dropped() {
    let mut p = default_profile(&[]);
    without_architectures(&mut p, &["SCMP_ARCH_X32"]);
    let arches = p["architectures"].as_array().unwrap();
    assert!(!arches.iter().any(|a| a == "SCMP_ARCH_X32"));
    assert!(!arches.is_empty());
}

use super::*;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// Docker's default capability set.
fn default_caps() -> Vec<String> {
    crate::caps::DEFAULT_CAPS
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn with(extra: &str) -> Vec<String> {
    let mut caps = default_caps();
    caps.push(extra.to_string());
    caps
}

fn parse(profile: Value) -> LinuxSeccomp {
    serde_json::from_value(profile).expect("oci-spec accepts the profile")
}

/// What the filter does with `name`, ignoring argument values.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allowed,
    /// Allowed for some argument values only.
    Conditional,
    Errno(u32),
    Denied,
}

fn verdict(profile: &LinuxSeccomp, name: &str) -> Verdict {
    let rules: Vec<_> = profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.names().iter().any(|n| n == name))
        .collect();
    if rules
        .iter()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
    {
        return Verdict::Allowed;
    }
    if rules
        .iter()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
    {
        return Verdict::Conditional;
    }
    match rules.first() {
        Some(s) if s.action() == LinuxSeccompAction::ScmpActErrno => {
            Verdict::Errno(s.errno_ret().unwrap_or(EPERM))
        }
        _ => Verdict::Denied,
    }
}

#[test]
fn allowlist_has_no_duplicates() {
    let mut names = ALLOW.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALLOW.len());
    assert_eq!(ALLOW.len(), 364);
}

#[test]
fn default_profile_denies_with_eperm() {
    let profile = parse(default_profile(&default_caps()));
    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(profile.default_errno_ret(), Some(EPERM));
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "kexec_load",
        "init_module",
        "finit_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "open_by_handle_at",
        "iopl",
        "settimeofday",
        "acct",
        "kcmp",
        "vhangup",
        "syslog",
        "mbind",
        "userfaultfd",
        "io_uring_setup",
        "name_that_does_not_exist",
    ] {
        assert_eq!(verdict(&profile, name), Verdict::Denied, "{name}");
    }
}

#[test]
fn default_profile_allows_ordinary_syscalls() {
    let profile = parse(default_profile(&default_caps()));
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "mmap",
        "futex",
        "exit_group",
        "wait4",
        "chroot",
        "ptrace",
        "process_vm_readv",
    ] {
        assert_eq!(verdict(&profile, name), Verdict::Allowed, "{name}");
    }
    for name in ["socket", "personality", "clone"] {
        assert_eq!(verdict(&profile, name), Verdict::Conditional, "{name}");
    }
    assert_eq!(verdict(&profile, "clone3"), Verdict::Errno(ENOSYS));
}

#[test]
fn default_clone_rule_masks_namespace_flags() {
    let profile = parse(default_profile(&default_caps()));
    let clone = profile
        .syscalls()
        .iter()
        .flatten()
        .find(|s| *s.names() == ["clone"])
        .expect("a clone rule");
    let args = clone.args().as_ref().expect("clone args");
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].index(), 0);
    assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(args[0].value(), 2_114_060_288);
    assert_eq!(args[0].value_two(), None);
}

#[test]
fn default_socket_rules_skip_af_alg_and_af_vsock() {
    let profile = parse(default_profile(&default_caps()));
    let socket: Vec<_> = profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| *s.names() == ["socket"])
        .map(|s| {
            let arg = s.args().as_ref().unwrap()[0];
            (arg.op(), arg.value())
        })
        .collect();
    assert_eq!(
        socket,
        [
            (LinuxSeccompOperator::ScmpCmpLt, 38),
            (LinuxSeccompOperator::ScmpCmpEq, 39),
            (LinuxSeccompOperator::ScmpCmpGt, 40),
        ]
    );
}

#[test]
fn cap_sys_admin_allows_mount_and_namespaces() {
    let profile = parse(default_profile(&with("CAP_SYS_ADMIN")));
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "bpf",
        "sethostname",
        "fsopen",
    ] {
        assert_eq!(verdict(&profile, name), Verdict::Allowed, "{name}");
    }
    assert_eq!(verdict(&profile, "reboot"), Verdict::Denied);
    let errno_rules = profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() != LinuxSeccompAction::ScmpActAllow)
        .count();
    assert_eq!(errno_rules, 0, "no clone3 ENOSYS rule with CAP_SYS_ADMIN");
}

#[test]
fn other_caps_grant_their_syscalls() {
    for (cap, names) in [
        ("CAP_SYS_BOOT", &["reboot"][..]),
        (
            "CAP_SYS_MODULE",
            &["init_module", "finit_module", "delete_module"],
        ),
        (
            "CAP_SYS_PTRACE",
            &["kcmp", "pidfd_getfd", "process_madvise"],
        ),
        ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
        ("CAP_SYS_NICE", &["mbind", "set_mempolicy"]),
        ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
        ("CAP_SYS_PACCT", &["acct"]),
        ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
        ("CAP_SYSLOG", &["syslog"]),
        ("CAP_BPF", &["bpf"]),
        ("CAP_PERFMON", &["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
        ("sys_boot", &["reboot"]),
    ] {
        let profile = parse(default_profile(&with(cap)));
        for name in names {
            assert_eq!(verdict(&profile, name), Verdict::Allowed, "{cap}: {name}");
        }
        assert_eq!(verdict(&profile, "mount"), Verdict::Denied, "{cap}: mount");
    }
    let no_chroot: Vec<String> = default_caps()
        .into_iter()
        .filter(|c| c != "CAP_SYS_CHROOT")
        .collect();
    assert_eq!(
        verdict(&parse(default_profile(&no_chroot)), "chroot"),
        Verdict::Denied
    );
    let all = parse(default_profile(&["ALL".to_string()]));
    assert_eq!(
        verdict(&all, "kexec_load"),
        Verdict::Denied,
        "never allowed"
    );
    assert_eq!(verdict(&all, "mount"), Verdict::Allowed);
}

#[test]
fn default_profile_arch_rules() {
    let profile = parse(default_profile(&default_caps()));
    match std::env::consts::ARCH {
        "x86_64" => {
            assert_eq!(
                profile.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
            assert_eq!(verdict(&profile, "arch_prctl"), Verdict::Allowed);
            assert_eq!(verdict(&profile, "modify_ldt"), Verdict::Allowed);
            assert_eq!(verdict(&profile, "set_tls"), Verdict::Denied);
        }
        "aarch64" => {
            assert_eq!(
                profile.architectures().as_deref(),
                Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
            );
            assert_eq!(verdict(&profile, "set_tls"), Verdict::Allowed);
            assert_eq!(verdict(&profile, "arch_prctl"), Verdict::Denied);
        }
        _ => {}
    }
    assert_eq!(verdict(&profile, "s390_runtime_instr"), Verdict::Denied);
}

#[test]
fn default_profile_round_trips_as_docker_json() {
    for caps in [default_caps(), with("CAP_SYS_ADMIN")] {
        let profile = default_profile(&caps);
        let bytes = serde_json::to_vec(&profile).unwrap();
        let again = profile_from_docker_json(&bytes, &caps, "default.json").unwrap();
        assert_eq!(again, profile);
    }
}

const DOCKER_PROFILE: &str = r#"{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
        {"name": "getpid", "action": "SCMP_ACT_LOG"},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["futex_waitv"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "2.6"}}
    ]
}"#;

fn load(text: &str, caps: &[String], arch: Option<(&str, &str)>) -> Result<Value, String> {
    let profile: DockerProfile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    convert(profile, &CapSet::new(caps), arch)
}

#[test]
fn docker_profile_is_converted_for_amd64() {
    let amd64 = Some(("amd64", "SCMP_ARCH_X86_64"));
    let out = load(DOCKER_PROFILE, &default_caps(), amd64).unwrap();
    assert_eq!(
        out,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
            ]
        })
    );
    let seccomp = parse(out);
    assert_eq!(verdict(&seccomp, "mount"), Verdict::Denied);
    assert_eq!(verdict(&seccomp, "clone"), Verdict::Conditional);
}

#[test]
fn docker_profile_conditions_follow_caps_and_arch() {
    let arm64 = Some(("arm64", "SCMP_ARCH_AARCH64"));
    let out = parse(load(DOCKER_PROFILE, &with("CAP_SYS_ADMIN"), arm64).unwrap());
    assert_eq!(
        out.architectures().as_deref(),
        Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
    );
    assert_eq!(verdict(&out, "mount"), Verdict::Allowed);
    assert_eq!(
        verdict(&out, "clone"),
        Verdict::Denied,
        "masked rule excluded"
    );
    assert_eq!(
        verdict(&out, "clone3"),
        Verdict::Denied,
        "ENOSYS rule excluded"
    );
    assert_eq!(verdict(&out, "set_tls"), Verdict::Allowed);
    assert_eq!(verdict(&out, "arch_prctl"), Verdict::Denied);

    let riscv = Some(("riscv64", "SCMP_ARCH_RISCV64"));
    let out = parse(load(DOCKER_PROFILE, &default_caps(), riscv).unwrap());
    assert_eq!(
        out.architectures().as_deref(),
        Some(&[Arch::ScmpArchRiscv64][..])
    );
    let out = load(DOCKER_PROFILE, &default_caps(), None).unwrap();
    assert!(out.get("architectures").is_none());
}

#[test]
fn docker_profile_keeps_architectures_flags_and_listener() {
    let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "/run/agent.sock",
        "listenerMetadata": "x",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_NOTIFY"},
                     {"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                      "args": [{"index": 1, "value": 0, "valueTwo": 7, "op": "SCMP_CMP_GE"}]}]}"#;
    let out = profile_from_docker_json(text.as_bytes(), &default_caps(), "p.json").unwrap();
    let seccomp = parse(out.clone());
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert_eq!(
        seccomp.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64][..])
    );
    assert_eq!(seccomp.flags().as_ref().map(Vec::len), Some(1));
    assert_eq!(out["listenerPath"], "/run/agent.sock");
    assert_eq!(out["syscalls"][1]["args"][0]["valueTwo"], 7);
    assert_eq!(verdict(&seccomp, "kill"), Verdict::Denied);
}

#[test]
fn empty_docker_profile_means_unconfined() {
    let out = profile_from_docker_json(b"{}", &default_caps(), "empty.json").unwrap();
    assert_eq!(out, Value::Null);
}

fn error(text: &str) -> String {
    profile_from_docker_json(text.as_bytes(), &default_caps(), "/x.json").unwrap_err()
}

#[test]
fn bad_docker_profiles_are_rejected_naming_the_problem() {
    assert_eq!(
        error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_FOO"}]}"#
        ),
        r#"seccomp profile /x.json: unknown action "SCMP_ACT_FOO""#
    );
    assert_eq!(
        error(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#),
        r#"seccomp profile /x.json: unknown action "SCMP_ACT_NOPE""#
    );
    // Rules that do not apply are checked too.
    assert_eq!(
        error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mount"],
            "action": "SCMP_ACT_ALOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#
        ),
        r#"seccomp profile /x.json: unknown action "SCMP_ACT_ALOW""#
    );
    assert_eq!(
        error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"],
            "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}"#
        ),
        r#"seccomp profile /x.json: unknown operator "SCMP_CMP_XX""#
    );
    assert_eq!(
        error(r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#),
        r#"seccomp profile /x.json: unknown architecture "SCMP_ARCH_Z80""#
    );
    assert_eq!(
        error(r#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_X"]}"#),
        r#"seccomp profile /x.json: unknown flag "SECCOMP_FILTER_FLAG_X""#
    );
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
        "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
    )
    .contains("both architectures and archMap"));
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#
    )
    .contains("both name and names"));
    assert!(
        error(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#)
            .contains("missing defaultAction")
    );
    assert!(error(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
        "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#
    )
    .contains(r#"invalid minKernel "4""#));
    let err = error("{ nope");
    assert!(
        err.starts_with("seccomp profile /x.json: invalid JSON: "),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn compiled_filters_are_cached_per_profile() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let default = default_profile(&default_caps());
    let first = compile_cached(&default, &cache).unwrap();
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let cached = files(&cache);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), first.to_bytes());
    // Read back, not compiled again: a planted program under the key is what comes back.
    let planted = Bpf {
        program: first.program[..1].to_vec(),
        flags: 0,
    };
    std::fs::write(&cached[0], planted.to_bytes()).unwrap();
    assert_eq!(
        compile_cached(&default, &cache).unwrap().to_bytes(),
        planted.to_bytes()
    );
    // A damaged file is compiled over.
    std::fs::write(&cached[0], b"berthbpf-cut").unwrap();
    let again = compile_cached(&default, &cache).unwrap();
    assert_eq!(again.to_bytes(), first.to_bytes());
    assert_eq!(std::fs::read(&cached[0]).unwrap(), first.to_bytes());
    // Another profile, another entry.
    let other = compile_cached(&default_profile(&with("CAP_SYS_ADMIN")), &cache).unwrap();
    assert_ne!(other.to_bytes(), first.to_bytes());
    assert_eq!(files(&cache).len(), 2);
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(parse_release("6.1.0-18-amd64\n"), Some((6, 1)));
    assert_eq!(parse_release("3.12-rc5"), Some((3, 12)));
    assert_eq!(parse_release("garbage"), None);
    assert_eq!(min_kernel("4.8"), Ok(Some((4, 8))));
    assert_eq!(min_kernel(""), Ok(None));
    assert!(min_kernel("0.0").is_err());
    assert!(min_kernel("4.8.1").is_err());
    assert!(min_kernel("300.1").is_err());
}
