//! Pod sandboxes: the namespaces a pod's containers share (network, ipc, uts), made
//! once per pod and pinned by bind mounts on files in the pod's run dir, as CRI-O's
//! `pinns` does, so no process is needed to hold them (and a pod costs no memory until
//! its containers run). The network namespace is wired by the CNI plugins of the node's
//! configuration; the pod's address is what they return.
//!
//! A pod that shares one PID namespace among its containers (kubelet's
//! `shareProcessNamespace`, crictl's default) also needs a process: `berth-pod-init`,
//! PID 1 of that namespace, started detached from berth.
//!
//! A pod is `ready` while its pins (and its init) exist: a reboot empties the run root, and the pod is
//! then `notready` until it is removed. Killing the CRI service leaves pods as they are.

use std::path::{Path, PathBuf};

use berth_net::cni::{self, NetworkList};
use nix::sched::CloneFlags;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{io_err, EngineError, Result};
use crate::specs::pod::{PodPid, PodSpec, SysctlNs};
use crate::Engine;

/// The node's CNI set-up: where the network configuration and the plugins are.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

/// A pod's state, as CRI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    Ready,
    NotReady,
}

/// What the engine keeps of a pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub spec: PodSpec,
    /// Nanoseconds since the epoch.
    pub created: i64,
    /// The namespaces pinned in the pod's run dir (`net`, `ipc`, `uts`).
    pub pins: Vec<String>,
    /// The host PID of the pod's init (`berth-pod-init`), when the pod has a PID
    /// namespace of its own.
    #[serde(default)]
    pub init_pid: Option<i32>,
    /// Its start time (clock ticks after boot): with the PID, who it is.
    #[serde(default)]
    pub init_start: u64,
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<String>,
    /// The CNI network the pod was added to and what ADD returned, until DEL.
    pub cni: Option<CniAttachment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAttachment {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub bin_dirs: Vec<PathBuf>,
    pub result: Value,
}

/// A pod as front ends show it.
#[derive(Debug, Clone)]
pub struct PodView {
    pub record: PodRecord,
    pub state: PodState,
    /// The pinned namespaces, by kind, for the pod's containers to join.
    pub namespaces: Vec<(String, PathBuf)>,
    /// The pod's run dir (its resolv.conf, hostname and hosts files).
    pub dir: PathBuf,
}

impl PodView {
    pub fn namespace(&self, kind: &str) -> Option<&Path> {
        self.namespaces
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, p)| p.as_path())
    }
}

const POD_ID_LEN: usize = 64;

impl Engine {
    /// The run dir of pod `id`: its pinned namespaces and name files.
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.run_root().join("pods").join(id)
    }

    /// Makes a pod sandbox: its namespaces, its network through CNI (unless it is on the
    /// host's), its resolv.conf, hosts and hostname files. Returns its id. Nothing of it
    /// is left when this fails.
    pub fn run_pod(&self, spec: &PodSpec, net: &PodNetwork) -> Result<String> {
        spec.validate()?;
        let list = if spec.host_network {
            None
        } else {
            Some(
                cni::load(&net.conf_dir)
                    .map_err(|e| EngineError::Unavailable(e.to_string()))?
                    .ok_or_else(|| {
                        EngineError::Unavailable(format!(
                            "pod networking is not ready: no CNI network configuration in {}",
                            net.conf_dir.display()
                        ))
                    })?,
            )
        };
        let mut rec = PodRecord {
            id: crate::names::new_id(),
            spec: spec.clone(),
            created: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            pins: Vec::new(),
            init_pid: None,
            init_start: 0,
            ips: Vec::new(),
            cni: None,
        };
        debug_assert_eq!(rec.id.len(), POD_ID_LEN);
        // The identity is reserved first: a second sandbox for the same attempt is a
        // conflict, however the two requests interleave.
        let inserted = self.db.execute(
            "INSERT INTO pods (id, name, namespace, uid, attempt, created, state, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'notready', ?7)",
            params![
                rec.id,
                spec.name,
                spec.namespace,
                spec.uid,
                spec.attempt,
                rec.created,
                record_json(&rec)
            ],
        );
        if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted {
            if e.code == rusqlite::ErrorCode::ConstraintViolation {
                return Err(EngineError::Conflict(format!(
                    "a pod sandbox for {}_{}_{}_{} exists already",
                    spec.name, spec.namespace, spec.uid, spec.attempt
                )));
            }
        }
        inserted?;
        match self.make_pod(&mut rec, list.as_ref(), net) {
            Ok(()) => {
                self.db.execute(
                    "UPDATE pods SET state = 'ready', record = ?2 WHERE id = ?1",
                    params![rec.id, record_json(&rec)],
                )?;
                Ok(rec.id)
            }
            Err(e) => {
                let _ = self.unmake_pod(&mut rec);
                let _ = std::fs::remove_dir_all(self.pod_dir(&rec.id));
                self.db
                    .execute("DELETE FROM pods WHERE id = ?1", [&rec.id])?;
                Err(e)
            }
        }
    }

    /// Makes the pod's namespaces, files and network, noting each in `rec` as it goes
    /// (so [`Engine::unmake_pod`] undoes a part made).
    fn make_pod(
        &self,
        rec: &mut PodRecord,
        list: Option<&NetworkList>,
        net: &PodNetwork,
    ) -> Result<()> {
        let spec = rec.spec.clone();
        let dir = self.pod_dir(&rec.id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let sys = |what: &str| {
            let what = what.to_string();
            move |e: berth_net::NetError| EngineError::Unavailable(format!("{what}: {e}"))
        };
        if !spec.host_network {
            let ns = dir.join("net");
            berth_net::netns::create(&ns).map_err(sys("the pod's network namespace"))?;
            rec.pins.push("net".into());
            berth_net::link::loopback_up(&ns).map_err(sys("the pod's loopback"))?;
            let sysctls = spec.sysctls_in(SysctlNs::Net);
            berth_net::netns::within(&ns, move || write_sysctls(&sysctls))
                .map_err(sys("the pod's sysctls"))?;
            // The host's UTS namespace goes with the host's network, as in Kubernetes.
            let hostname = spec.hostname.clone();
            berth_net::netns::pin_new(&dir.join("uts"), CloneFlags::CLONE_NEWUTS, move || {
                if hostname.is_empty() {
                    return Ok(());
                }
                nix::unistd::sethostname(&hostname).map_err(|e| berth_net::NetError::Io {
                    what: "setting the pod's hostname".into(),
                    source: e.into(),
                })
            })
            .map_err(sys("the pod's UTS namespace"))?;
            rec.pins.push("uts".into());
        }
        if !spec.host_ipc {
            let sysctls = spec.sysctls_in(SysctlNs::Ipc);
            berth_net::netns::pin_new(&dir.join("ipc"), CloneFlags::CLONE_NEWIPC, move || {
                write_sysctls(&sysctls)
            })
            .map_err(sys("the pod's IPC namespace"))?;
            rec.pins.push("ipc".into());
        }
        if spec.pid == PodPid::Pod {
            let pid = self.start_pod_init()?;
            rec.init_pid = Some(pid);
            rec.init_start = crate::sys::process_start_time(pid).unwrap_or_default();
            // In kubelet's pod cgroup, as containerd places the pod's pause container.
            if let Some(cgroup) = pod_cgroup(rec) {
                crate::sys::join_cgroup(
                    Path::new("/sys/fs/cgroup"),
                    crate::sys::cgroup_v1_hierarchies().as_deref(),
                    &cgroup,
                    pid,
                )
                .map_err(|e| {
                    EngineError::Unavailable(format!(
                        "moving the pod's init into its cgroup {cgroup}: {e}"
                    ))
                })?;
            }
            berth_net::netns::pin_existing(&dir.join("pid"), &proc_ns(pid, "pid"))
                .map_err(sys("the pod's PID namespace"))?;
            rec.pins.push("pid".into());
        }
        self.write_pod_files(&dir, &spec)?;
        if let Some(list) = list {
            let attachment = attachment(rec, &dir.join("net"));
            let result = list.add(&net.bin_dirs, &attachment).map_err(|e| {
                EngineError::Unavailable(format!("setting up the pod network: {e}"))
            })?;
            rec.ips = cni::addresses(&result)
                .iter()
                .map(|ip| ip.to_string())
                .collect();
            rec.cni = Some(CniAttachment {
                name: list.name.clone(),
                cni_version: list.cni_version.clone(),
                plugins: list.plugins.clone(),
                bin_dirs: net.bin_dirs.clone(),
                result,
            });
        }
        Ok(())
    }

    /// Starts `berth-pod-init` in a new PID namespace; returns its host PID.
    /// (It runs in this process's cgroup until moved into the pod's.)
    fn start_pod_init(&self) -> Result<i32> {
        use std::os::unix::process::CommandExt;
        let path = self.opts.pod_init_path();
        let mut cmd = std::process::Command::new(&path);
        cmd.stdin(std::process::Stdio::null());
        // SAFETY: between fork and exec the child makes one syscall (unshare), which
        // allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(std::io::Error::from)
            });
        }
        let out = cmd.output().map_err(io_err(&path))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse::<i32>() {
            Ok(pid) if out.status.success() && pid > 0 => Ok(pid),
            _ => Err(EngineError::Unavailable(format!(
                "starting the pod's init ({}): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    /// The pod's resolv.conf (its DNS config, else the host's), hostname and hosts.
    fn write_pod_files(&self, dir: &Path, spec: &PodSpec) -> Result<()> {
        let resolv = match &spec.dns {
            Some(dns) => {
                let mut s = String::new();
                if !dns.searches.is_empty() {
                    s.push_str(&format!("search {}\n", dns.searches.join(" ")));
                }
                for server in &dns.servers {
                    s.push_str(&format!("nameserver {server}\n"));
                }
                if !dns.options.is_empty() {
                    s.push_str(&format!("options {}\n", dns.options.join(" ")));
                }
                s
            }
            None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let hostname = if spec.host_network || spec.hostname.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            spec.hostname.clone()
        };
        let hosts = if spec.host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()
        };
        for (name, text) in [
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts),
        ] {
            let p = dir.join(name);
            berth_image::fsutil::replace_file(&p, text.as_bytes()).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Takes the pod's network down (CNI DEL) and unpins its namespaces: what a stop
    /// does. Each step is dropped from `rec` once done, so this can be repeated.
    fn unmake_pod(&self, rec: &mut PodRecord) -> Result<()> {
        let dir = self.pod_dir(&rec.id);
        if let Some(c) = &rec.cni {
            let list = NetworkList {
                name: c.name.clone(),
                cni_version: c.cni_version.clone(),
                plugins: c.plugins.clone(),
            };
            // A namespace that went (with a reboot) is passed as none: the plugins then
            // give back what they hold outside it (the address), as CNI asks.
            let ns = dir.join("net");
            let ns = if berth_net::netns::is_pinned(&ns) {
                ns
            } else {
                PathBuf::new()
            };
            list.del(&c.bin_dirs, &attachment(rec, &ns), Some(&c.result))
                .map_err(|e| {
                    EngineError::Unavailable(format!("taking down the pod network: {e}"))
                })?;
            rec.cni = None;
        }
        if let Some(pid) = rec.init_pid {
            // Only the pod's own init: the PID may name another process after a reboot.
            if init_alive(rec) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // Not our child (it left us at its start): gone when it is a zombie (all
                // of its namespace's processes are killed by then); whoever reaps it, the
                // host's init or a subreaper, may take a while.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while crate::sys::process_alive(pid, rec.init_start)
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            rec.init_pid = None;
            if let Some(cgroup) = pod_cgroup(rec) {
                crate::sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &cgroup).map_err(|e| {
                    EngineError::Unavailable(format!("removing the pod's cgroup {cgroup}: {e}"))
                })?;
            }
        }
        for kind in std::mem::take(&mut rec.pins) {
            berth_net::netns::remove(&dir.join(&kind)).map_err(|e| {
                EngineError::Unavailable(format!("unpinning the pod's {kind} namespace: {e}"))
            })?;
        }
        Ok(())
    }

    /// The containers created in pod `id`.
    pub fn pod_containers(&self, id: &str) -> Result<Vec<crate::model::ContainerRecord>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|c| c.pod.as_deref() == Some(id))
            .collect())
    }

    /// Stops pod `id`: its containers are killed, its network goes (CNI DEL) and its
    /// namespaces are unpinned; the pod stays, `notready`, until removed. Stopping a
    /// stopped pod is done.
    pub fn stop_pod(&self, id: &str) -> Result<()> {
        let mut rec = self.pod_record(id)?;
        for c in self.pod_containers(&rec.id)? {
            match self.stop_container(&c.id, Some(0)) {
                Ok(()) | Err(EngineError::NotRunning { .. }) => {}
                Err(e) if e.class() == crate::ErrorClass::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let done = self.unmake_pod(&mut rec);
        self.db.execute(
            "UPDATE pods SET state = 'notready', record = ?2 WHERE id = ?1",
            params![rec.id, record_json(&rec)],
        )?;
        done
    }

    /// Removes pod `id` (stopping it first), its containers and its run dir.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let rec = self.pod_record(id)?;
        self.stop_pod(&rec.id)?;
        for c in self.pod_containers(&rec.id)? {
            match self.remove_container(&c.id, true, true) {
                Err(e) if e.class() != crate::ErrorClass::NotFound => return Err(e),
                _ => {}
            }
        }
        let dir = self.pod_dir(&rec.id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        self.db
            .execute("DELETE FROM pods WHERE id = ?1", [&rec.id])?;
        Ok(())
    }

    /// Pod `id` (a full id or a unique prefix of one).
    pub fn pod(&self, id: &str) -> Result<PodView> {
        let rec = self.pod_record(id)?;
        let state: String =
            self.db
                .query_row("SELECT state FROM pods WHERE id = ?1", [&rec.id], |r| {
                    r.get(0)
                })?;
        Ok(self.pod_view(rec, &state))
    }

    /// Every pod, newest first.
    pub fn pods(&self) -> Result<Vec<PodView>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT record, state FROM pods ORDER BY created DESC")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(json, state)| Ok(self.pod_view(record_from_json(&json)?, &state)))
            .collect()
    }

    fn pod_view(&self, record: PodRecord, state: &str) -> PodView {
        let dir = self.pod_dir(&record.id);
        let namespaces: Vec<(String, PathBuf)> = record
            .pins
            .iter()
            .map(|k| (k.clone(), dir.join(k)))
            .collect();
        // Ready while its pins are there (a reboot, an empty run root, takes them all: the
        // first tells) and the pod's init, if it has one, lives.
        let ready = state == "ready"
            && namespaces
                .first()
                .is_none_or(|(_, p)| berth_net::netns::is_pinned(p))
            && (record.init_pid.is_none() || init_alive(&record));
        PodView {
            record,
            state: if ready {
                PodState::Ready
            } else {
                PodState::NotReady
            },
            namespaces,
            dir,
        }
    }

    fn pod_record(&self, id: &str) -> Result<PodRecord> {
        let missing = || EngineError::NotFound(format!("no such pod sandbox: {id}"));
        if id.is_empty() || id.len() > POD_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(missing());
        }
        let mut stmt = self
            .db
            .prepare_cached("SELECT record FROM pods WHERE id LIKE ?1 LIMIT 2")?;
        let rows = stmt
            .query_map([format!("{}%", id.to_lowercase())], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        match rows.as_slice() {
            [one] => record_from_json(one),
            [] => Err(missing()),
            _ => Err(EngineError::Invalid(format!(
                "multiple pod sandboxes match the id prefix {id}"
            ))),
        }
    }

    /// Whether a pod with this id exists (for front ends that treat a missing one as
    /// done).
    pub fn pod_exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .db
            .query_row("SELECT 1 FROM pods WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

/// The CNI attachment of a pod: its id, namespace and Kubernetes identity, its ports
/// and DNS for the plugins that declare those capabilities.
/// The cgroup of a pod's init: `PARENT/ID` under the cgroup parent kubelet gives (none
/// without one: the init stays in the service's).
fn pod_cgroup(rec: &PodRecord) -> Option<String> {
    match rec.spec.cgroup_parent.trim_end_matches('/') {
        "" => None,
        parent => Some(format!("{parent}/{}", rec.id)),
    }
}

fn attachment(rec: &PodRecord, netns: &Path) -> cni::Attachment {
    let spec = &rec.spec;
    let mut a = cni::Attachment {
        container_id: rec.id.clone(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), spec.namespace.clone()),
            ("K8S_POD_NAME".into(), spec.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), rec.id.clone()),
            ("K8S_POD_UID".into(), spec.uid.clone()),
        ],
        capabilities: Default::default(),
    };
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| {
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol,
                "hostIP": p.host_ip,
            })
        })
        .collect();
    if !ports.is_empty() {
        a.capabilities
            .insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(dns) = &spec.dns {
        a.capabilities.insert(
            "dns".into(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    a
}

/// Writes sysctls (paths under /proc/sys, checked by [`PodSpec::validate`]) as seen by
/// the calling thread's namespaces.
fn write_sysctls(sysctls: &[(String, String)]) -> berth_net::Result<()> {
    for (path, value) in sysctls {
        let p = Path::new("/proc/sys").join(path);
        std::fs::write(&p, value).map_err(|e| berth_net::NetError::Io {
            what: format!("setting sysctl {}", path.replace('/', ".")),
            source: e,
        })?;
    }
    Ok(())
}

/// Whether the pod's init still runs: its PID with the start time it had.
fn init_alive(rec: &PodRecord) -> bool {
    rec.init_pid
        .is_some_and(|pid| crate::sys::process_start_time(pid).is_some_and(|t| t == rec.init_start))
}

fn proc_ns(pid: i32, kind: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{kind}"))
}

fn record_json(rec: &PodRecord) -> String {
    serde_json::to_string(rec).expect("a pod record serialises")
}

fn record_from_json(json: &str) -> Result<PodRecord> {
    serde_json::from_str(json).map_err(|source| EngineError::Json {
        what: "pod record".into(),
        source,
    })
}
