//! The networks' name servers: which containers answer to which names.

use super::*;

impl Engine {
    pub(super) fn dns_dir(&self) -> PathBuf {
        self.run_root().join("dns")
    }

    /// Whether a network resolves its containers' names: every one but the default,
    /// as in Docker.
    pub(crate) fn has_dns(net: &NetworkRecord) -> bool {
        net.name != DEFAULT_NETWORK
    }

    /// Rewrites the records of every network's name server (through a temp file and a
    /// rename each) from the endpoints of the running containers; `change` is a
    /// container starting (true) or stopping (false) whose state does not say so yet.
    /// On its network a container is found by its name, its short id and its aliases
    /// there; a container on several networks also finds the others' names on them
    /// (records scoped to its address, so nobody else does).
    pub(crate) fn refresh_dns(&self, change: Option<(&str, bool)>) -> Result<()> {
        let mut st = self
            .db
            .prepare("SELECT container, network, ip, aliases FROM endpoints ORDER BY ip")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        let networks: BTreeMap<String, NetworkRecord> = self
            .network_rows()?
            .into_iter()
            .filter(Self::has_dns)
            .map(|n| (n.id.clone(), n))
            .collect();
        /// A running container on a network: its id, its address there, its names there.
        type Named<'a> = (&'a str, &'a str, Vec<String>);
        // network -> its running containers.
        let mut names: BTreeMap<&str, Vec<Named>> = BTreeMap::new();
        let mut running: BTreeMap<&str, bool> = BTreeMap::new();
        for (c, n, ip, aliases) in &rows {
            if !networks.contains_key(n.as_str()) {
                continue;
            }
            let up = *running.entry(c).or_insert_with(|| match change {
                Some((id, up)) if id == c => up,
                _ => self
                    .container_state(c)
                    .map(|s| s.status.is_active())
                    .unwrap_or(false),
            });
            if !up {
                continue;
            }
            let Ok(rec) = self.find_container(c) else {
                continue;
            };
            let mut all = vec![rec.name.clone(), c[..12].to_string()];
            all.extend(serde_json::from_str::<Vec<String>>(aliases).unwrap_or_default());
            names.entry(n).or_default().push((c, ip, all));
        }
        let dir = self.dns_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for id in networks.keys() {
            let mut text = String::new();
            let members = names
                .get(id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (_, ip, all) in members {
                for name in all {
                    text.push_str(&format!("{name} {ip}\n"));
                }
            }
            // Members on other networks too see those networks' names.
            for (c, source, _) in members {
                let shared = names
                    .iter()
                    .filter(|(o, theirs)| {
                        **o != id.as_str() && theirs.iter().any(|(k, _, _)| k == c)
                    })
                    .map(|(_, theirs)| theirs);
                for theirs in shared {
                    for (_, ip, all) in theirs {
                        for name in all {
                            text.push_str(&format!("{name} {ip} {source}\n"));
                        }
                    }
                }
            }
            let p = dir.join(format!("{id}.hosts"));
            berth_image::fsutil::replace_file(&p, text.as_bytes()).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The pid of `net`'s name server, if it runs (its pid file names it with its start
    /// time, so a reused pid is not taken for it).
    pub(super) fn dns_server_pid(&self, net: &NetworkRecord) -> Option<i32> {
        let pidfile = self.dns_dir().join(format!("{}.pid", net.id));
        let (pid, start) =
            crate::monitor::parse_owner(std::fs::read_to_string(pidfile).ok()?.trim())?;
        crate::sys::process_alive(pid, start).then_some(pid)
    }

    /// Starts `net`'s name server (on its gateway's port 53) unless it runs.
    pub(super) fn ensure_dns_server(&self, net: &NetworkRecord) -> Result<()> {
        let pidfile = self.dns_dir().join(format!("{}.pid", net.id));
        if self.dns_server_pid(net).is_some() {
            return Ok(());
        }
        // `berth dns-serve`: the `berth` beside this process's binary (which may be
        // `berth-monitor` or `berth-cri`).
        let exe = crate::berth_exe().map_err(io_err("the berth binary"))?;
        let exe = Some(exe.with_file_name("berth"))
            .filter(|b| b.is_file())
            .unwrap_or(exe);
        let records = self.dns_dir().join(format!("{}.hosts", net.id));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("dns-serve")
            .arg("--addr")
            .arg(format!("{}:53", net.gateway))
            .arg("--records")
            .arg(&records)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe; the server outlives this process.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io_err(&exe))?;
        let pid = child.id() as i32;
        let start = crate::sys::process_start_time(pid).unwrap_or(0);
        berth_image::fsutil::replace_file(&pidfile, format!("{pid}-{start}").as_bytes())
            .map_err(io_err(&pidfile))?;
        Ok(())
    }

    /// Stops `net`'s name server and removes its files.
    pub(super) fn stop_dns_server(&self, net: &NetworkRecord) {
        if let Some(pid) = self.dns_server_pid(net) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(self.dns_dir().join(format!("{}.pid", net.id)));
        let _ = std::fs::remove_file(self.dns_dir().join(format!("{}.hosts", net.id)));
    }

    /// A starting container's names go to its networks' name servers (started if need
    /// be). Returns the one its resolv.conf points to: the first of its networks that
    /// has one.
    pub(crate) fn dns_for_start(
        &self,
        rec: &ContainerRecord,
        endpoints: &[Endpoint],
    ) -> Result<Option<Ipv4Addr>> {
        let with_dns: Vec<&NetworkRecord> = endpoints
            .iter()
            .map(|e| &e.network)
            .filter(|n| Self::has_dns(n))
            .collect();
        if with_dns.is_empty() {
            return Ok(None);
        }
        self.refresh_dns(Some((&rec.id, true)))?;
        for n in &with_dns {
            self.ensure_dns_server(n)?;
        }
        Ok(Some(with_dns[0].gateway))
    }
}
