//! `create`, `run`, `start`, `attach` and `exec`: flags to engine options, and the
//! attached session.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use berth_engine::attach::{self, Hello};
use berth_engine::exec::{ExecIo, ExecSpec};
use berth_engine::model::{ContainerConfig, HostConfig, LogConfig, MountSpec, RestartPolicy};
use berth_engine::spec::parse_bytes;
use berth_engine::specs::container::{parse_publish, parse_restart, parse_ulimit};
use berth_engine::specs::{parse, ContainerSpec};

/// The engine's mount parsers, their errors as `run`'s (125).
fn parse_volume(v: &str) -> CliResult<MountSpec> {
    berth_engine::mounts::parse_volume(v).map_err(invalid)
}

pub fn parse_mount(v: &str) -> CliResult<MountSpec> {
    berth_engine::mounts::parse_mount(v).map_err(invalid)
}

fn parse_tmpfs(v: &str) -> CliResult<MountSpec> {
    berth_engine::mounts::parse_tmpfs(v).map_err(invalid)
}
use berth_engine::Engine;
use clap::{ArgAction, Args};

use crate::terminal::{self, AttachEnd};
use crate::{CliResult, Failure};

/// Flags shared by `create` and `run`.
#[derive(Args, Clone, Debug)]
pub struct CreateFlags {
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Bind mount a volume (NAME:/path, /host/dir:/path[:ro], or /path)
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…)
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Connect a container to a network: none (default: loopback only), host, bridge
    /// or a network made with `network create`
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port(s) to the host ([IP:][HOSTPORT:]PORT[/tcp|udp], ranges
    /// allowed); needs a network
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security options (seccomp=unconfined|FILE, no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long = "device")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ('c 1:3 rwm')
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// IPC mode to use (private, shareable, host, ns:PATH)
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use (host, ns:PATH)
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use (host, ns:PATH)
    #[arg(long)]
    pub uts: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Ulimit options (nofile=1024:2048)
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Runtime to use: builtin (default), runc, crun, or a path
    #[arg(long)]
    pub runtime: Option<String>,
    /// Logging driver: json-file (default), local (compressed rotation) or none
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Restart policy: no, always, unless-stopped, on-failure[:max-retries]
    #[arg(long)]
    pub restart: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub image_and_cmd: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> Failure {
    Failure::new(125, msg)
}

impl CreateFlags {
    /// The flags as the engine's create request, checked by the engine's rules before
    /// anything is pulled.
    pub fn checked_spec(&self) -> CliResult<ContainerSpec> {
        let spec = self.to_spec()?;
        spec.validate().map_err(run_failure)?;
        Ok(spec)
    }

    /// The flags as the engine's create request; the engine checks its values.
    pub fn to_spec(&self) -> CliResult<ContainerSpec> {
        let (image, cmd) = self
            .image_and_cmd
            .split_first()
            .ok_or_else(|| invalid("requires at least 1 argument"))?;
        let port_bindings = parse_publish(&self.publish).map_err(run_failure)?;
        let restart_policy = match self.restart.as_deref() {
            None => RestartPolicy {
                name: "no".into(),
                maximum_retry_count: 0,
            },
            Some(p) => parse_restart(p).map_err(run_failure)?,
        };
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(parse::env_file(f).map_err(run_failure)?);
        }
        env.extend(self.env.iter().filter_map(|e| parse::env_entry(e)));
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        let dur = |flag: &str, v: &Option<String>| -> CliResult<i64> {
            v.as_deref()
                .map_or(Ok(0), |s| parse::flag_duration(flag, s))
                .map_err(run_failure)
        };
        let any_health = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some();
        if self.no_healthcheck && any_health {
            return Err(invalid(
                "--no-healthcheck conflicts with --health-* options",
            ));
        }
        let healthcheck = if self.no_healthcheck {
            Some(berth_engine::model::HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            })
        } else if any_health {
            Some(berth_engine::model::HealthConfig {
                test: self
                    .health_cmd
                    .as_ref()
                    .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
                    .unwrap_or_default(),
                interval: dur("--health-interval", &self.health_interval)?,
                timeout: dur("--health-timeout", &self.health_timeout)?,
                start_period: dur("--health-start-period", &self.health_start_period)?,
                retries: self.health_retries.unwrap_or(0),
                ..Default::default()
            })
        } else {
            None
        };
        let config = ContainerConfig {
            hostname: self.hostname.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            attach_stdin: self.interactive,
            attach_stdout: true,
            attach_stderr: true,
            tty: self.tty,
            open_stdin: self.interactive,
            // Docker's: a container attached with -i takes one client's input, whose end
            // closes the container's stdin (not so when run detached: see `run`).
            stdin_once: self.interactive,
            env,
            cmd: if cmd.is_empty() {
                None
            } else {
                Some(cmd.to_vec())
            },
            image: image.clone(),
            working_dir: self.workdir.clone().unwrap_or_default(),
            labels,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            healthcheck,
            exposed_ports: parse::exposed_ports(&self.expose).map_err(run_failure)?,
            ..Default::default()
        };
        let mut mounts = Vec::new();
        let mut binds = Vec::new();
        for v in &self.volumes {
            mounts.push(parse_volume(v)?);
            binds.push(v.clone());
        }
        for m in &self.mounts {
            mounts.push(parse_mount(m)?);
        }
        let mut tmpfs = BTreeMap::new();
        for t in &self.tmpfs {
            let m = parse_tmpfs(t)?;
            tmpfs.insert(m.target.clone(), m.options.join(","));
            mounts.push(m);
        }
        let bytes = |flag: &str, v: &Option<String>| -> CliResult<i64> {
            match v {
                None => Ok(0),
                Some(s) if s == "-1" => Ok(-1),
                Some(s) => parse_bytes(s).ok_or_else(|| {
                    invalid(format!(
                        "invalid argument {s:?} for \"{flag}\" flag: invalid size"
                    ))
                }),
            }
        };
        let memory = bytes("--memory", &self.memory)?;
        let memory_swap = bytes("--memory-swap", &self.memory_swap)?;
        let memory_reservation = bytes("--memory-reservation", &self.memory_reservation)?;
        let nano_cpus = match &self.cpus {
            None => 0,
            Some(s) => parse::cpus(s).map_err(run_failure)?,
        };
        let ulimits = self
            .ulimit
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(run_failure)?;
        let mut log_config = LogConfig {
            kind: self.log_driver.clone().unwrap_or_default(),
            config: BTreeMap::new(),
        };
        for o in &self.log_opt {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| invalid(format!("invalid log opt: {o}")))?;
            log_config.config.insert(k.to_string(), v.to_string());
        }
        let shm_size = match &self.shm_size {
            None => 0,
            Some(s) => parse_bytes(s)
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(format!("invalid size: {s:?}")))?,
        };
        let devices = self
            .device
            .iter()
            .map(|d| {
                berth_engine::devices::parse(d).map_err(|e| {
                    invalid(format!("invalid argument {d:?} for \"--device\" flag: {e}"))
                })
            })
            .collect::<CliResult<Vec<_>>>()?;
        let host_config = HostConfig {
            binds,
            network_mode: self.network.clone().unwrap_or_default(),
            auto_remove: self.rm,
            log_config,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            security_opt: self.security_opt.clone(),
            group_add: self.group_add.clone(),
            readonly_rootfs: self.read_only,
            tmpfs,
            shm_size,
            runtime: self.runtime.clone().unwrap_or_default(),
            init: self.init.then_some(true),
            memory,
            memory_swap,
            memory_reservation,
            nano_cpus,
            cpu_shares: self.cpu_shares.unwrap_or(0),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            pids_limit: self.pids_limit,
            ulimits,
            mounts,
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            extra_hosts: self.add_host.clone(),
            restart_policy,
            port_bindings,
            publish_all_ports: self.publish_all,
            ipc_mode: self.ipc.clone().unwrap_or_default(),
            pid_mode: self.pid.clone().unwrap_or_default(),
            uts_mode: self.uts.clone().unwrap_or_default(),
            oom_score_adj: self.oom_score_adj.unwrap_or(0),
            cpu_quota: self.cpu_quota.unwrap_or(0),
            cpu_period: self.cpu_period.unwrap_or(0),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            masked_paths: None,
            readonly_paths: None,
            cgroup_parent: self.cgroup_parent.clone().unwrap_or_default(),
            devices,
            device_cgroup_rules: self.device_cgroup_rule.clone(),
        };
        Ok(ContainerSpec {
            name: self.name.clone(),
            image: image.clone(),
            config,
            entrypoint: self.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    vec![]
                } else {
                    vec![e.clone()]
                }
            }),
            host_config,
            endpoint: berth_engine::networks::EndpointRequest {
                ip: self.ip.clone(),
                mac: self.mac_address.clone(),
                aliases: self.network_alias.clone(),
            },
            pod: None,
        })
    }
}

/// An engine error of create/run/start (see [`crate::exit_code`]).
pub fn run_failure(e: berth_engine::EngineError) -> Failure {
    Failure::new(
        crate::exit_code(&e, true),
        berth_engine::monitor::error_chain(&e),
    )
}

/// Starts a created container attached to this terminal; returns the exit code.
pub fn start_attached(engine: &Engine, id: &str, stdin: bool, tty: bool) -> CliResult<u8> {
    let mut handle = engine
        .start_container(id, true)
        .map_err(run_failure)?
        .ok_or_else(|| invalid(format!("container {id} is already running")))?;
    let sock = attach::connect(
        engine.run_root(),
        id,
        Hello {
            stdin,
            stdout: true,
            stderr: true,
        },
    )
    .map_err(|e| invalid(format!("attaching to {id}: {e}")))?;
    if let Err(e) = handle.finish() {
        handle.wait_monitor();
        return Err(run_failure(e));
    }
    let mut auto_remove = false;
    if let Ok(rec) = engine.find_container(id) {
        auto_remove = rec.host_config.auto_remove;
        engine.emit_container(&rec, "start", &[]);
    }
    // The monitor of an auto-removed container ends the connection once the container is
    // gone, and deletes its files after that: no need to wait for it to end.
    let removal = if auto_remove {
        sock.try_clone().ok()
    } else {
        None
    };
    let end = terminal::attach_session(sock, stdin, tty)?;
    match end {
        AttachEnd::Exited(code) => {
            match removal {
                Some(mut s) => {
                    let _ = std::io::copy(&mut s, &mut std::io::sink());
                }
                None => handle.wait_monitor(),
            }
            Ok(code as u8)
        }
        AttachEnd::Detached => Ok(0),
        AttachEnd::Lost => {
            handle.wait_monitor();
            let st = engine.container_state(id).map_err(run_failure)?;
            Ok(st.exit_code as u8)
        }
    }
}

/// Pulls the image first when `--pull` asks for it: `missing` (Docker's default) when it
/// is not here, `always`, or `never`. Progress goes to stderr, as Docker's does.
pub fn ensure_image(
    engine: &Engine,
    image: &str,
    policy: &str,
    platform: Option<String>,
) -> CliResult<()> {
    let pull = match policy {
        "never" => false,
        "always" => true,
        "missing" => match engine.find_or_builtin_image(image) {
            Ok(_) => false,
            Err(berth_engine::EngineError::NoSuchImage(_)) => {
                let shown = berth_image::reference::Reference::parse(image)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| image.to_string());
                eprintln!("Unable to find image '{shown}' locally");
                true
            }
            Err(e) => return Err(run_failure(e)),
        },
        other => {
            return Err(invalid(format!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        )))
        }
    };
    if pull {
        pull_image(engine, image, platform)?;
    }
    Ok(())
}

/// Pulls `image` with progress on stderr, then Docker's digest and status lines.
pub fn pull_image(engine: &Engine, image: &str, platform: Option<String>) -> CliResult<()> {
    let opts = berth_engine::distribution::PullOptions {
        platform,
        insecure: berth_engine::distribution::insecure_registries(),
        ..Default::default()
    };
    let mut display = crate::progress::Display::stderr();
    let pulled = engine
        .pull(image, &opts, &mut |p| display.show(p))
        .map_err(run_failure)?;
    eprintln!("Digest: {}", pulled.digest);
    eprintln!(
        "Status: {} for {}",
        if pulled.downloaded {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        },
        pulled.reference.familiar()
    );
    Ok(())
}

/// `run` of a checked request: the image pulled as `policy` says (see [`ensure_image`]),
/// the container made, then started detached or attached to this terminal.
pub fn run(
    engine: &Engine,
    spec: ContainerSpec,
    policy: &str,
    platform: Option<String>,
    detach: bool,
) -> CliResult<u8> {
    let mut spec = spec;
    if detach {
        // As Docker's CLI: nothing is attached, so no client's input is the only one.
        spec.config.attach_stdin = false;
        spec.config.attach_stdout = false;
        spec.config.attach_stderr = false;
        spec.config.stdin_once = false;
    }
    ensure_image(engine, &spec.image, policy, platform)?;
    let auto_remove = spec.host_config.auto_remove;
    let (stdin, tty) = (spec.config.open_stdin, spec.config.tty);
    let (id, warnings) = engine.create_container(spec).map_err(run_failure)?;
    for w in warnings {
        eprintln!("WARNING: {w}");
    }
    if detach {
        match engine.start_container(&id, false) {
            Ok(_) => {
                println!("{id}");
                Ok(0)
            }
            Err(e) => {
                if auto_remove {
                    let _ = engine.remove_container(&id, true, true);
                }
                Err(run_failure(e))
            }
        }
    } else {
        let res = start_attached(engine, &id, stdin, tty);
        if res.is_err() && auto_remove {
            let _ = engine.remove_container(&id, true, true);
        }
        res
    }
}

/// `attach`.
pub fn attach_running(engine: &Engine, name: &str, no_stdin: bool) -> CliResult<u8> {
    let rec = engine.find_container(name)?;
    let st = engine.container_state(&rec.id)?;
    if !st.status.is_active() {
        return Err(Failure::new(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    let stdin = rec.config.open_stdin && !no_stdin;
    let sock = attach::connect(
        engine.run_root(),
        &rec.id,
        Hello {
            stdin,
            stdout: true,
            stderr: true,
        },
    )?;
    match terminal::attach_session(sock, stdin, rec.config.tty)? {
        AttachEnd::Exited(c) => Ok(c as u8),
        AttachEnd::Detached => Ok(0),
        AttachEnd::Lost => Ok(engine.container_state(&rec.id)?.exit_code as u8),
    }
}

/// Flags of `exec`.
#[derive(Args, Clone, Debug)]
pub struct ExecFlags {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// CONTAINER COMMAND [ARG...]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, num_args = 2.., value_name = "CONTAINER COMMAND [ARG...]")]
    pub args: Vec<String>,
}

fn dup_std(fd: std::os::fd::BorrowedFd<'_>) -> CliResult<OwnedFd> {
    fd.try_clone_to_owned().map_err(Failure::from)
}

/// `exec`: the container's monitor starts the command and reports how it ended (see
/// `berth_engine::exec`).
pub fn exec(engine: &Engine, f: &ExecFlags) -> CliResult<u8> {
    let (name, cmd) = f.args.split_first().expect("clap requires two args");
    let opts = ExecSpec {
        cmd: cmd.to_vec(),
        env: f.env.clone(),
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        tty: f.tty,
        privileged: f.privileged,
    };
    let prepared = engine.exec_prepare(name, &opts)?;
    if f.tty && !f.detach {
        let dir = engine.run_root().join("s");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("x{}.con", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        let process = prepared.start(ExecIo::Terminal(path.clone()));
        let _ = std::fs::remove_file(&path);
        let process = process?;
        let master = berth_engine::monitor::receive_pty_from(&listener)?;
        let finished = terminal::pump_pty(&master, f.interactive)?;
        if !finished {
            return Ok(0);
        }
        return Ok(process.wait()? as u8);
    }
    let null = berth_engine::exec::dev_null;
    let stdin = if f.interactive && !f.detach {
        dup_std(io::stdin().as_fd())?
    } else {
        null()?
    };
    let (stdout, stderr) = if f.detach {
        (null()?, null()?)
    } else {
        let _ = io::stdout().flush();
        (
            dup_std(io::stdout().as_fd())?,
            dup_std(io::stderr().as_fd())?,
        )
    };
    let process = prepared.start(ExecIo::Streams([stdin, stdout, stderr]))?;
    if f.detach {
        return Ok(0);
    }
    Ok(process.wait()? as u8)
}
