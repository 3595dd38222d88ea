//! Container and pod statistics, from the same cgroup readers as `berth stats`, and
//! kubelet's container events, from the engine's event log.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_engine::model::ContainerRecord;
use berth_engine::pods::PodView;
use berth_engine::Engine;
use k8s_cri::v1 as cri;

use crate::containers::CriMeta;

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// The CPU time each container had at the last look, for `usage_nano_cores` (the rate
/// since then), as containerd keeps it.
#[derive(Debug, Default)]
pub struct CpuSamples(Mutex<HashMap<String, (u64, i64)>>);

impl CpuSamples {
    /// The rate of `cpu_ns` since the last sample of `id` (None for the first), and
    /// this sample kept for the next.
    fn rate(&self, id: &str, cpu_ns: u64, at: i64) -> Option<u64> {
        let mut m = self.0.lock().expect("cpu samples lock");
        let before = m.insert(id.to_string(), (cpu_ns, at));
        let (cpu0, t0) = before?;
        let wall = at.checked_sub(t0).filter(|w| *w > 0)? as u128;
        Some((u128::from(cpu_ns.saturating_sub(cpu0)) * 1_000_000_000 / wall) as u64)
    }

    /// Forgets the containers that are gone.
    fn keep_only(&self, ids: &[&str]) {
        self.0
            .lock()
            .expect("cpu samples lock")
            .retain(|id, _| ids.contains(&id.as_str()));
    }
}

/// One container's statistics: CPU and memory from its cgroup while it runs (zero
/// otherwise), its writable layer's size.
pub fn container_stats(
    e: &Engine,
    rec: &ContainerRecord,
    meta: &CriMeta,
    samples: &CpuSamples,
) -> cri::ContainerStats {
    let at = now();
    let running = e
        .container_state(&rec.id)
        .is_ok_and(|st| st.status.is_active());
    let usage = running
        .then(|| e.container_usage(&rec.id).ok())
        .flatten()
        .unwrap_or_default();
    let upper = e.container_dir(&rec.id).join("upper");
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: meta.name.clone(),
                attempt: meta.attempt,
            }),
            labels: meta.labels.clone(),
            annotations: meta.annotations.clone(),
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: at,
            usage_core_nano_seconds: value(usage.cpu_ns),
            usage_nano_cores: samples.rate(&rec.id, usage.cpu_ns, at).and_then(value),
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: at,
            working_set_bytes: value(usage.mem_bytes),
            usage_bytes: value(usage.mem_bytes),
            available_bytes: usage
                .mem_limit
                .and_then(|l| value(l.saturating_sub(usage.mem_bytes))),
            ..Default::default()
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: e.root().join("containers").display().to_string(),
            }),
            used_bytes: value(berth_engine::volumes::dir_size(&upper)),
            inodes_used: None,
        }),
        swap: None,
    }
}

/// The statistics of every container of kubelet's that `keep` accepts.
pub fn list_container_stats(
    e: &Engine,
    samples: &CpuSamples,
    keep: impl Fn(&ContainerRecord, &CriMeta) -> bool,
) -> berth_engine::Result<Vec<cri::ContainerStats>> {
    let records = e.container_records()?;
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    samples.keep_only(&ids);
    Ok(records
        .iter()
        .filter_map(|rec| Some((rec, rec.pod.as_ref().and(CriMeta::of(rec))?)))
        .filter(|(rec, meta)| keep(rec, meta))
        .map(|(rec, meta)| container_stats(e, rec, &meta, samples))
        .collect())
}

/// A pod's statistics: the sums of its containers', its network interfaces' counters
/// (read inside its network namespace) and its process count.
pub fn pod_stats(
    e: &Engine,
    pod: &PodView,
    samples: &CpuSamples,
) -> berth_engine::Result<cri::PodSandboxStats> {
    let at = now();
    let containers = list_container_stats(e, samples, |rec, _| {
        rec.pod.as_deref() == Some(pod.record.id.as_str())
    })?;
    let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> u64 {
        containers.iter().filter_map(f).sum()
    };
    let cpu = sum(&|c| Some(c.cpu.as_ref()?.usage_core_nano_seconds.as_ref()?.value));
    let cores = sum(&|c| Some(c.cpu.as_ref()?.usage_nano_cores.as_ref()?.value));
    let memory = sum(&|c| Some(c.memory.as_ref()?.working_set_bytes.as_ref()?.value));
    let processes: u64 = e
        .pod_containers(&pod.record.id)?
        .iter()
        .filter_map(|c| e.container_usage(&c.id).ok())
        .map(|u| u.pids)
        .sum::<u64>()
        + u64::from(pod.record.init_pid.is_some());
    let interfaces = pod.namespace("net").map(network_usage).unwrap_or_default();
    let spec = &pod.record.spec;
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: pod.record.id.clone(),
            metadata: Some(cri::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: spec.attempt,
            }),
            labels: spec.labels.clone().into_iter().collect(),
            annotations: spec.annotations.clone().into_iter().collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp: at,
                usage_core_nano_seconds: value(cpu),
                usage_nano_cores: value(cores),
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: at,
                working_set_bytes: value(memory),
                usage_bytes: value(memory),
                ..Default::default()
            }),
            network: Some(cri::NetworkUsage {
                timestamp: at,
                default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
                interfaces,
            }),
            process: Some(cri::ProcessUsage {
                timestamp: at,
                process_count: value(processes),
            }),
            containers,
        }),
        windows: None,
    })
}

/// The counters of the interfaces in the network namespace at `ns` (loopback left
/// out), from its `/proc/net/dev`.
fn network_usage(ns: &std::path::Path) -> Vec<cri::NetworkInterfaceUsage> {
    let text = berth_net::netns::within(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|e| berth_net::NetError::Io {
            what: "reading /proc/net/dev".into(),
            source: e,
        })
    })
    .unwrap_or_default();
    parse_net_dev(&text)
}

/// `/proc/net/dev`: per interface, received bytes, packets, errs, drop, … then sent.
fn parse_net_dev(text: &str) -> Vec<cri::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let name = name.trim();
            let n: Vec<u64> = counters
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            (name != "lo" && n.len() >= 11).then(|| cri::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: value(n[0]),
                rx_errors: value(n[2]),
                tx_bytes: value(n[8]),
                tx_errors: value(n[10]),
            })
        })
        .collect()
}

/// CRI's event type for an engine container event, if kubelet has one for it.
pub fn event_type(action: &str) -> Option<cri::ContainerEventType> {
    use cri::ContainerEventType as T;
    Some(match action {
        "create" => T::ContainerCreatedEvent,
        "start" => T::ContainerStartedEvent,
        "die" => T::ContainerStoppedEvent,
        "destroy" => T::ContainerDeletedEvent,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_rate_is_from_the_previous_sample() {
        let s = CpuSamples::default();
        assert_eq!(s.rate("a", 1_000, 0), None);
        // Half a core: 0.5 s of CPU time in 1 s.
        assert_eq!(s.rate("a", 500_001_000, 1_000_000_000), Some(500_000_000));
        s.keep_only(&[]);
        assert_eq!(s.rate("a", 0, 2_000_000_000), None);
    }

    #[test]
    fn interfaces_come_from_proc_net_dev_without_loopback() {
        let text = "Inter-|   Receive                            |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2048      10    1    0    0     0          0         0     4096      20    2    0    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "eth0");
        assert_eq!(v[0].rx_bytes, value(2048));
        assert_eq!(v[0].rx_errors, value(1));
        assert_eq!(v[0].tx_bytes, value(4096));
        assert_eq!(v[0].tx_errors, value(2));
        assert_eq!(
            event_type("die"),
            Some(cri::ContainerEventType::ContainerStoppedEvent)
        );
        assert_eq!(event_type("attach"), None);
    }
}
