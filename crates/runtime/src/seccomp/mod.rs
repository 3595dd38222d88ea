//! Seccomp profiles for containers, as the OCI `linux.seccomp` object.
//!
//! [`default_profile`] is Docker's default policy (moby `profiles/seccomp` v0.2.3) written as
//! data: `ALLOW`, the syscalls every container may make, and `RULES`, a short table of
//! rules that depend on the native architecture, the container's capabilities or a syscall
//! argument. Every other syscall fails with `EPERM`. Only the amd64 and arm64 rules are kept;
//! the profile's kernel conditions (ptrace and `process_vm_*` from 4.8) are taken as met, so
//! those syscalls sit in `ALLOW`.
//!
//! [`profile_from_docker_json`] reads a profile in Docker's format (`--security-opt
//! seccomp=FILE`: `archMap`, `name`/`names`, `includes`/`excludes` on capabilities,
//! architectures and kernel versions), evaluates its conditions for this host and container,
//! and checks every action, operator, architecture and flag, so a bad file is rejected here,
//! with a message naming the problem, rather than by the runtime at start.
//!
//! Both produce the OCI runtime-spec shape as runc and crun read it: for
//! `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo` the expected value. [`compile`]
//! turns such a profile into a BPF program and [`compile_cached`] keeps the program in a
//! cache dir, since building it is the expensive part. (The built-in runtime never hands
//! libcontainer a profile: it loads the program itself, see `crate::builtin`.)

#![forbid(unsafe_code)]

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::str::FromStr;

/// `EPERM`: what a syscall outside the profile returns.
const EPERM: u32 = 1;
/// `ENOSYS` on amd64 and arm64: what `clone3` returns without `CAP_SYS_ADMIN`, so libc
/// falls back to `clone`, whose flags seccomp can see.
const ENOSYS: u32 = 38;
/// `AF_ALG` and `AF_VSOCK`: the socket families the default profile refuses.
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
/// The `clone` flags that create namespaces: `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
const CLONE_NEW_FLAGS: u64 = 0x7e02_0000;
/// `personality(2)` personas: `PER_LINUX32` and `UNAME26`.
const PER_LINUX32: u64 = 0x0008;
const UNAME26: u64 = 0x0002_0000;

const ALLOW_ACT: &str = "SCMP_ACT_ALLOW";
const LT: &str = "SCMP_CMP_LT";
const EQ: &str = "SCMP_CMP_EQ";
const GT: &str = "SCMP_CMP_GT";
const MASKED_EQ: &str = "SCMP_CMP_MASKED_EQ";

/// The actions, comparison operators, architectures and filter flags the OCI runtime spec
/// (and oci-spec's enums) know.
#[rustfmt::skip]
const ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
];
#[rustfmt::skip]
const OPERATORS: &[&str] = &[
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
#[rustfmt::skip]
const ARCHES: &[&str] = &[
    "SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
];
#[rustfmt::skip]
const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The filter architectures of the default profile, by native architecture (Docker's name):
/// the native one first, then the compat ABIs a process may switch to.
const DEFAULT_ARCHES: &[(&str, &[&str])] = &[
    (
        "amd64",
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    ),
    ("arm64", &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
];

/// Syscalls every container may make, whatever its capabilities.
#[rustfmt::skip]
const ALLOW: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
    "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect",
    "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "process_vm_readv",
    "process_vm_writev", "pselect6", "pselect6_time64", "ptrace", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
    "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_thread_area",
    "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "setxattrat",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64",
    "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// When a [`Rule`] applies.
#[derive(Clone, Copy, Debug)]
enum When {
    /// Always.
    Always,
    /// On this native architecture (Docker's name: `amd64`, `arm64`).
    Arch(&'static str),
    /// When the container has this capability.
    Cap(&'static str),
    /// When the container lacks this capability.
    NoCap(&'static str),
}

/// What a [`Rule`] does to the syscalls it matches.
#[derive(Clone, Copy, Debug)]
enum Act {
    Allow,
    Errno(u32),
}

/// One argument comparison: argument index, operator, value (for `SCMP_CMP_MASKED_EQ` the
/// mask; the expected value is then 0).
type Cmp = (u32, &'static str, u64);

/// A conditional part of the default profile.
#[derive(Debug)]
struct Rule {
    names: &'static [&'static str],
    when: When,
    act: Act,
    /// All must hold (an empty list matches every call).
    args: &'static [Cmp],
}

/// Allows `names` when `when` holds.
const fn allow(when: When, names: &'static [&'static str]) -> Rule {
    Rule {
        names,
        when,
        act: Act::Allow,
        args: &[],
    }
}

/// Allows `names` when their arguments pass every comparison in `args`.
const fn allow_if(names: &'static [&'static str], args: &'static [Cmp]) -> Rule {
    Rule {
        names,
        when: When::Always,
        act: Act::Allow,
        args,
    }
}

/// The rest of the default profile, in Docker's order. Rules for the same syscall add up:
/// a call is allowed when any applicable rule allows it.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    // socket(2) for every address family but AF_ALG and AF_VSOCK.
    allow_if(&["socket"], &[(0, LT, AF_ALG)]),
    allow_if(&["socket"], &[(0, EQ, AF_ALG + 1)]),
    allow_if(&["socket"], &[(0, GT, AF_VSOCK)]),
    // personality(2): the Linux personas and the query (0xffffffff), nothing that changes
    // the address-space layout (e.g. ADDR_NO_RANDOMIZE).
    allow_if(&["personality"], &[(0, EQ, 0)]),
    allow_if(&["personality"], &[(0, EQ, PER_LINUX32)]),
    allow_if(&["personality"], &[(0, EQ, UNAME26)]),
    allow_if(&["personality"], &[(0, EQ, UNAME26 | PER_LINUX32)]),
    allow_if(&["personality"], &[(0, EQ, 0xffff_ffff)]),
    allow(
        When::Arch("arm64"),
        &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
          "cacheflush", "set_tls"],
    ),
    allow(When::Arch("amd64"), &["arch_prctl", "modify_ldt"]),
    allow(When::Cap("CAP_DAC_READ_SEARCH"), &["open_by_handle_at"]),
    allow(
        When::Cap("CAP_SYS_ADMIN"),
        &["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
          "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
          "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
          "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
          "umount2", "unshare"],
    ),
    // Without CAP_SYS_ADMIN, clone(2) only without namespace flags; clone3(2) keeps its
    // flags in memory seccomp cannot read, so it reports ENOSYS and libc falls back to clone.
    Rule {
        names: &["clone"],
        when: When::NoCap("CAP_SYS_ADMIN"),
        act: Act::Allow,
        args: &[(0, MASKED_EQ, CLONE_NEW_FLAGS)],
    },
    Rule { names: &["clone3"], when: When::NoCap("CAP_SYS_ADMIN"), act: Act::Errno(ENOSYS), args: &[] },
    allow(When::Cap("CAP_SYS_BOOT"), &["reboot"]),
    allow(When::Cap("CAP_SYS_CHROOT"), &["chroot"]),
    allow(When::Cap("CAP_SYS_MODULE"), &["delete_module", "init_module", "finit_module"]),
    allow(When::Cap("CAP_SYS_PACCT"), &["acct"]),
    allow(
        When::Cap("CAP_SYS_PTRACE"),
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
          "ptrace"],
    ),
    allow(When::Cap("CAP_SYS_RAWIO"), &["iopl", "ioperm"]),
    allow(
        When::Cap("CAP_SYS_TIME"),
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    allow(When::Cap("CAP_SYS_TTY_CONFIG"), &["vhangup"]),
    allow(
        When::Cap("CAP_SYS_NICE"),
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    allow(When::Cap("CAP_SYSLOG"), &["syslog"]),
    allow(When::Cap("CAP_BPF"), &["bpf"]),
    allow(When::Cap("CAP_PERFMON"), &["perf_event_open"]),
];

/// The OCI `linux.seccomp` object of Docker's default profile for a container with the
/// capability set `caps` (names like `CAP_SYS_ADMIN`; `SYS_ADMIN` and `ALL` are understood
/// too).
///
/// The unconditional allows (with the capability-granted ones) come first as one rule; the
/// argument-filtered and `ENOSYS` rules follow. `architectures` lists the native filter
/// architecture and its compat ABIs on amd64 and arm64, and is left out elsewhere (the
/// runtime then filters the native one only).
pub fn default_profile(caps: &[String]) -> Value {
    let caps = CapSet::new(caps);
    let arch = native_arch().map(|(docker, _)| docker);
    let mut allowed: Vec<&str> = ALLOW.to_vec();
    let mut rest = Vec::new();
    for rule in RULES {
        let applies = match rule.when {
            When::Always => true,
            When::Arch(a) => arch == Some(a),
            When::Cap(c) => caps.has(c),
            When::NoCap(c) => !caps.has(c),
        };
        if !applies {
            continue;
        }
        match rule.act {
            Act::Allow if rule.args.is_empty() => {
                for name in rule.names {
                    if !allowed.contains(name) {
                        allowed.push(name);
                    }
                }
            }
            act => {
                let mut syscall = json!({ "names": rule.names, "action": ALLOW_ACT });
                if let Act::Errno(errno) = act {
                    syscall["action"] = json!("SCMP_ACT_ERRNO");
                    syscall["errnoRet"] = json!(errno);
                }
                if !rule.args.is_empty() {
                    let args: Vec<Value> = rule
                        .args
                        .iter()
                        .map(|&(index, op, value)| json!({ "index": index, "value": value, "op": op }))
                        .collect();
                    syscall["args"] = Value::Array(args);
                }
                rest.push(syscall);
            }
        }
    }
    let mut syscalls = vec![json!({ "names": allowed, "action": ALLOW_ACT })];
    syscalls.extend(rest);
    let mut profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "syscalls": syscalls,
    });
    let arches = DEFAULT_ARCHES.iter().find(|(a, _)| Some(*a) == arch);
    if let Some((_, arches)) = arches {
        profile["architectures"] = json!(arches);
    }
    profile
}

/// Loads a profile in Docker's JSON format (`--security-opt seccomp=FILE`) and turns it into
/// the OCI `linux.seccomp` object for a container with the capability set `caps`.
///
/// Rules are kept or dropped as Docker does: `excludes` drops a rule when the native
/// architecture is listed, when the container has any listed capability, or when the kernel
/// is at least `minKernel`; `includes` keeps it only when the native architecture is listed,
/// the container has every listed capability and the kernel is at least `minKernel`. Every
/// rule is checked, kept or not. `source` names the profile in errors, which are one line:
/// `seccomp profile /x.json: unknown action "SCMP_ACT_FOO"`.
///
/// A profile with neither `defaultAction` nor `syscalls` means "no filter" to Docker; it
/// gives `Value::Null` here (`"seccomp": null` in a spec: unconfined).
pub fn profile_from_docker_json(
    bytes: &[u8],
    caps: &[String],
    source: &str,
) -> Result<Value, String> {
    let fail = |msg: String| format!("seccomp profile {source}: {msg}");
    let profile: DockerProfile =
        serde_json::from_slice(bytes).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    if profile.default_action.is_empty() && profile.syscalls.is_empty() {
        return Ok(Value::Null);
    }
    convert(profile, &CapSet::new(caps), native_arch()).map_err(fail)
}

/// Drops the filter architectures in `unsupported` from a profile. Used for ABIs the
/// running kernel cannot execute (x32 on most kernels): no syscall of such an ABI can
/// succeed there with or without the filter, so no outcome changes, while every
/// architecture in a filter adds about as much time to building it as the first.
pub fn without_architectures(profile: &mut Value, unsupported: &[&str]) {
    if let Some(arches) = profile
        .get_mut("architectures")
        .and_then(Value::as_array_mut)
    {
        arches.retain(|a| !unsupported.iter().any(|u| a.as_str() == Some(*u)));
    }
}

/// A container's capabilities, normalised to `CAP_*` upper case.
struct CapSet(Vec<String>);

impl CapSet {
    fn new(caps: &[String]) -> Self {
        CapSet(caps.iter().map(|c| normalise_cap(c)).collect())
    }

    fn has(&self, cap: &str) -> bool {
        let cap = normalise_cap(cap);
        self.0.iter().any(|c| *c == cap || c == "CAP_ALL")
    }
}

fn normalise_cap(cap: &str) -> String {
    let cap = cap.trim().to_ascii_uppercase();
    if cap.starts_with("CAP_") {
        cap
    } else {
        format!("CAP_{cap}")
    }
}

/// The native architecture as Docker names it in `includes.arches` (`amd64`, `arm64`, …) and
/// as a seccomp filter architecture, or `None` on one seccomp profiles do not describe.
fn native_arch() -> Option<(&'static str, &'static str)> {
    let little = cfg!(target_endian = "little");
    Some(match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "x86" => ("x86", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "loongarch64" => ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
        "powerpc64" if little => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        _ => return None,
    })
}

/// Null in Docker's JSON (Go) means "empty"; serde's `default` alone rejects it.
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// A profile in Docker's format.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    #[serde(default, deserialize_with = "null_as_default")]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arch_map: Vec<DockerArch>,
    #[serde(default, deserialize_with = "null_as_default")]
    flags: Vec<String>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    syscalls: Vec<DockerSyscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArch {
    architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    names: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    action: String,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    args: Vec<DockerArg>,
    includes: Option<Filter>,
    excludes: Option<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "null_as_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arches: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    min_kernel: String,
}

/// The conversion proper; errors lack the `seccomp profile SOURCE: ` prefix.
/// `arch` is [`native_arch`], a parameter so tests can pose as another host.
fn convert(
    profile: DockerProfile,
    caps: &CapSet,
    arch: Option<(&str, &str)>,
) -> Result<Value, String> {
    if profile.default_action.is_empty() {
        return Err("missing defaultAction".into());
    }
    known("action", ACTIONS, &profile.default_action)?;
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err("both architectures and archMap are set, use one".into());
    }
    for a in &profile.architectures {
        known("architecture", ARCHES, a)?;
    }
    let mut arches = profile.architectures;
    for entry in &profile.arch_map {
        known("architecture", ARCHES, &entry.architecture)?;
        for sub in &entry.sub_architectures {
            known("architecture", ARCHES, sub)?;
        }
    }
    let native = arch.map(|(_, scmp)| scmp);
    if let Some(entry) = profile
        .arch_map
        .iter()
        .find(|e| Some(e.architecture.as_str()) == native)
    {
        arches.push(entry.architecture.clone());
        arches.extend(entry.sub_architectures.iter().cloned());
    }
    for flag in &profile.flags {
        known("flag", FLAGS, flag)?;
    }

    let docker_arch = arch.map(|(docker, _)| docker);
    let mut syscalls = Vec::new();
    for call in profile.syscalls {
        let names = match (call.name.is_empty(), call.names.is_empty()) {
            (false, false) => {
                return Err(format!(
                    "syscall {:?}: both name and names are set, use one",
                    call.name
                ))
            }
            (false, true) => vec![call.name],
            (true, _) => call.names,
        };
        let what = |msg: String| format!("{msg} (syscalls {})", names.join(","));
        if call.action.is_empty() {
            return Err(what("missing action".into()));
        }
        known("action", ACTIONS, &call.action)?;
        for arg in &call.args {
            known("operator", OPERATORS, &arg.op)?;
            if arg.index > 5 {
                return Err(what(format!(
                    "argument index {} is out of range 0-5",
                    arg.index
                )));
            }
        }
        let excluded = match &call.excludes {
            None => false,
            Some(f) => {
                let min = min_kernel(&f.min_kernel).map_err(what)?;
                docker_arch.is_some_and(|a| f.arches.iter().any(|x| x == a))
                    || f.caps.iter().any(|c| caps.has(c))
                    || min.is_some_and(kernel_at_least)
            }
        };
        let included = match &call.includes {
            None => true,
            Some(f) => {
                let min = min_kernel(&f.min_kernel).map_err(what)?;
                (f.arches.is_empty()
                    || docker_arch.is_some_and(|a| f.arches.iter().any(|x| x == a)))
                    && f.caps.iter().all(|c| caps.has(c))
                    && min.is_none_or(kernel_at_least)
            }
        };
        if excluded || !included {
            continue;
        }
        let mut out = json!({ "names": names, "action": call.action });
        if let Some(errno) = call.errno_ret {
            out["errnoRet"] = json!(errno);
        }
        if !call.args.is_empty() {
            let args: Vec<Value> = call
                .args
                .iter()
                .map(|a| {
                    let mut arg = json!({ "index": a.index, "value": a.value, "op": a.op });
                    if a.value_two != 0 {
                        arg["valueTwo"] = json!(a.value_two);
                    }
                    arg
                })
                .collect();
            out["args"] = Value::Array(args);
        }
        syscalls.push(out);
    }

    let mut out = json!({ "defaultAction": profile.default_action, "syscalls": syscalls });
    if let Some(errno) = profile.default_errno_ret {
        out["defaultErrnoRet"] = json!(errno);
    }
    if !arches.is_empty() {
        out["architectures"] = json!(arches);
    }
    if !profile.flags.is_empty() {
        out["flags"] = json!(profile.flags);
    }
    if let Some(path) = profile.listener_path {
        out["listenerPath"] = json!(path);
    }
    if let Some(metadata) = profile.listener_metadata {
        out["listenerMetadata"] = json!(metadata);
    }
    Ok(out)
}

/// Checks that `value` is one of `allowed`.
fn known(kind: &str, allowed: &[&str], value: &str) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!("unknown {kind} {value:?}"))
    }
}

/// Parses a `minKernel` condition, `"<kernel>.<major>"` like `"4.8"`; empty means none.
fn min_kernel(text: &str) -> Result<Option<(u32, u32)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("invalid minKernel {text:?}, expected \"<kernel>.<major>\" like \"4.8\"");
    let (kernel, major) = text.split_once('.').ok_or_else(bad)?;
    let kernel: u8 = kernel.parse().map_err(|_| bad())?;
    let major: u8 = major.parse().map_err(|_| bad())?;
    if kernel == 0 && major == 0 {
        return Err(bad());
    }
    Ok(Some((kernel.into(), major.into())))
}

/// Whether the running kernel is at least `min`; an unreadable release counts as new enough.
fn kernel_at_least(min: (u32, u32)) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| parse_release(&release))
        .is_none_or(|running| running >= min)
}

/// `"6.1.0-18-amd64"` → `(6, 1)`; suffixes and the patch level are ignored.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let kernel = parts.next()?.parse().ok()?;
    let major = parts.next()?.parse().ok()?;
    Some((kernel, major))
}

/// Compiles an OCI `linux.seccomp` object (mask of `SCMP_CMP_MASKED_EQ` in `value`, as
/// runc reads it) into a BPF program for `seccomp(SECCOMP_SET_MODE_FILTER)`, and the
/// filter flags. Built once and loaded many times (see [`crate::enter`]): building is the
/// expensive part, a few milliseconds per architecture.
///
/// Rules follow runc: a rule whose action is the default is left out, a syscall the
/// kernel headers do not know is skipped, and comparisons that repeat an argument index
/// become one rule each.
pub fn compile(profile: &Value) -> Result<Bpf, String> {
    use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
    let err = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let action = |name: &str, errno: Option<u64>| -> Result<ScmpAction, String> {
        let errno = errno.map(|e| e as i32).unwrap_or(EPERM as i32);
        match name {
            "SCMP_ACT_NOTIFY" => Err("seccomp: SCMP_ACT_NOTIFY is not supported".into()),
            "SCMP_ACT_ERRNO" | "SCMP_ACT_TRACE" => {
                ScmpAction::from_str(name, Some(errno)).map_err(|e| err(name, e))
            }
            _ => ScmpAction::from_str(name, None).map_err(|e| err(name, e)),
        }
    };
    let default = action(
        profile["defaultAction"]
            .as_str()
            .unwrap_or("SCMP_ACT_ALLOW"),
        profile["defaultErrnoRet"].as_u64(),
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter", e))?;
    ctx.set_ctl_nnp(false).map_err(|e| err("nnp", e))?;
    // A binary tree over syscall numbers instead of a linear list: the kernel emulates the
    // program for every syscall number when it loads it (to cache the always-allowed
    // ones), so a short path per syscall makes each load several times cheaper.
    ctx.set_ctl_optimize(2).map_err(|e| err("optimize", e))?;
    let mut flags: u64 = 0;
    for f in profile["flags"].as_array().into_iter().flatten() {
        flags |= match f.as_str().unwrap_or_default() {
            "SECCOMP_FILTER_FLAG_TSYNC" => 1,
            "SECCOMP_FILTER_FLAG_LOG" => 2,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
            other => return Err(format!("seccomp: unsupported filter flag {other:?}")),
        };
    }
    for a in profile["architectures"].as_array().into_iter().flatten() {
        let name = a.as_str().unwrap_or_default();
        let arch = ScmpArch::from_str(name).map_err(|e| err(name, e))?;
        ctx.add_arch(arch).map_err(|e| err(name, e))?;
    }
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let act = action(
            rule["action"].as_str().unwrap_or_default(),
            rule["errnoRet"].as_u64(),
        )?;
        if act == default {
            continue;
        }
        let mut conds = Vec::new();
        let mut seen = Vec::new();
        let mut repeated = false;
        for a in rule["args"].as_array().into_iter().flatten() {
            let index = a["index"].as_u64().unwrap_or(0) as u32;
            repeated |= seen.contains(&index);
            seen.push(index);
            let value = a["value"].as_u64().unwrap_or(0);
            let two = a["valueTwo"].as_u64().unwrap_or(0);
            let op = a["op"].as_str().unwrap_or_default();
            conds.push(if op == MASKED_EQ {
                ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(value), two)
            } else {
                let cmp = ScmpCompareOp::from_str(op).map_err(|e| err(op, e))?;
                ScmpArgCompare::new(index, cmp, value)
            });
        }
        let groups: Vec<&[ScmpArgCompare]> = if repeated {
            conds.iter().map(std::slice::from_ref).collect()
        } else {
            vec![&conds[..]]
        };
        for name in rule["names"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            for g in &groups {
                ctx.add_rule_conditional(act, sc, g)
                    .map_err(|e| err(&format!("rule for {name}"), e))?;
            }
        }
    }
    // libseccomp 2.5 (Debian 12) exports only to an fd.
    let mut file = File::from(
        nix::sys::memfd::memfd_create(
            c"berth-seccomp",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(|e| format!("seccomp: memfd: {e}"))?,
    );
    ctx.export_bpf(&file).map_err(|e| err("export", e))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("seccomp: reading the program: {e}"))?;
    let program = bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Ok(Bpf { program, flags })
}

/// [`compile`], with the program kept in `dir` under the SHA-256 of the profile and the
/// libseccomp version, so a profile is compiled once per host (or boot, with a run-root on
/// tmpfs) rather than once per container. A cache file is written to a temp file, synced
/// and renamed into place; one that cannot be written costs the next caller a compile.
pub fn compile_cached(profile: &Value, dir: &std::path::Path) -> Result<Bpf, String> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(version.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(profile).map_err(|e| format!("seccomp: {e}"))?);
    let key: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{key}.bpf"));
    if let Some(bpf) = std::fs::read(&path).ok().and_then(|b| Bpf::from_bytes(&b)) {
        return Ok(bpf);
    }
    let bpf = compile(profile)?;
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| File::create(&tmp))
        .and_then(|mut f| {
            f.write_all(&bpf.to_bytes())?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(bpf)
}

/// A compiled seccomp filter: the BPF program and the `seccomp()` flags.
#[derive(Clone)]
pub struct Bpf {
    pub program: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*`
    pub flags: u64,
}

const FILTER_MAGIC: &[u8; 8] = b"berthbpf";

impl Bpf {
    /// The filter as bytes, for a cache file: magic, flags, then the instructions.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = FILTER_MAGIC.to_vec();
        out.extend_from_slice(&self.flags.to_le_bytes());
        for i in &self.program {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.extend_from_slice(&[i.jt, i.jf]);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out
    }

    /// Reads what [`Bpf::to_bytes`] wrote; None for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Bpf> {
        let rest = b.strip_prefix(FILTER_MAGIC)?;
        if rest.len() < 8 || (rest.len() - 8) % 8 != 0 || rest.len() == 8 {
            return None;
        }
        let flags = u64::from_le_bytes(rest[..8].try_into().ok()?);
        let program = rest[8..]
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Bpf { program, flags })
    }
}

#[cfg(test)]
mod tests;
