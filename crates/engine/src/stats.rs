//! Container resource usage from cgroup files, for `stats`. One reader per cgroup version
//! behind one trait (`CgroupReader`); both are tested on fake trees in a temp dir.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What a cgroup has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// CPU time in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, page cache that can be dropped not counted (as Docker counts it).
    pub mem_bytes: u64,
    /// Memory limit (None: unlimited).
    pub mem_limit: Option<u64>,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
}

/// Reads a container's usage from its cgroup (`rel`, e.g. `/berth/<id>`).
pub trait CgroupReader {
    fn usage(&self, rel: &str) -> std::io::Result<Usage>;
}

fn read(p: PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(p)
}

fn num(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| num(v)).flatten()
    })
}

/// cgroup v1: one hierarchy per controller.
pub struct V1 {
    pub root: PathBuf,
}

impl CgroupReader for V1 {
    fn usage(&self, rel: &str) -> std::io::Result<Usage> {
        let rel = rel.trim_start_matches('/');
        let dir = |c: &str| self.root.join(c).join(rel);
        let mem = dir("memory");
        let stat = read(mem.join("memory.stat")).unwrap_or_default();
        let raw = num(&read(mem.join("memory.usage_in_bytes"))?).unwrap_or(0);
        let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
        let limit = num(&read(mem.join("memory.limit_in_bytes")).unwrap_or_default())
            .filter(|l| *l < (1 << 62));
        let (mut r, mut w) = (0, 0);
        for l in read(dir("blkio").join("blkio.throttle.io_service_bytes"))
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, "Read", v] => r += num(v).unwrap_or(0),
                [_, "Write", v] => w += num(v).unwrap_or(0),
                _ => {}
            }
        }
        Ok(Usage {
            cpu_ns: num(&read(dir("cpuacct").join("cpuacct.usage")).unwrap_or_default())
                .unwrap_or(0),
            mem_bytes: raw.saturating_sub(inactive),
            mem_limit: limit,
            pids: num(&read(dir("pids").join("pids.current")).unwrap_or_default()).unwrap_or(0),
            blk_read: r,
            blk_write: w,
        })
    }
}

/// cgroup v2: one unified tree.
pub struct V2 {
    pub root: PathBuf,
}

impl CgroupReader for V2 {
    fn usage(&self, rel: &str) -> std::io::Result<Usage> {
        let dir = self.root.join(rel.trim_start_matches('/'));
        let stat = read(dir.join("memory.stat")).unwrap_or_default();
        let raw = num(&read(dir.join("memory.current"))?).unwrap_or(0);
        let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
        let limit = read(dir.join("memory.max")).ok().and_then(|s| num(&s));
        let cpu = keyed(
            &read(dir.join("cpu.stat")).unwrap_or_default(),
            "usage_usec",
        )
        .unwrap_or(0)
            * 1000;
        let (mut r, mut w) = (0, 0);
        for l in read(dir.join("io.stat")).unwrap_or_default().lines() {
            for kv in l.split_whitespace().skip(1) {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => r += num(v).unwrap_or(0),
                    Some(("wbytes", v)) => w += num(v).unwrap_or(0),
                    _ => {}
                }
            }
        }
        Ok(Usage {
            cpu_ns: cpu,
            mem_bytes: raw.saturating_sub(inactive),
            mem_limit: limit,
            pids: num(&read(dir.join("pids.current")).unwrap_or_default()).unwrap_or(0),
            blk_read: r,
            blk_write: w,
        })
    }
}

/// The reader for the cgroup tree at `root` (v2 when it has `cgroup.controllers`).
pub fn reader(root: &Path) -> Box<dyn CgroupReader> {
    if root.join("cgroup.controllers").exists() {
        Box::new(V2 {
            root: root.to_path_buf(),
        })
    } else {
        Box::new(V1 {
            root: root.to_path_buf(),
        })
    }
}

/// Docker's CPU %: CPU time used over wall time elapsed, in percent of one CPU.
pub fn cpu_percent(before: &Usage, after: &Usage, wall_ns: u64) -> f64 {
    if wall_ns == 0 {
        return 0.0;
    }
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / wall_ns as f64 * 100.0
}

/// The host's memory, the limit of an unlimited container.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// The same container, seen through each version's files: both readers must agree.
    fn fake_v1(root: &Path) {
        let c = "berth/c1";
        write(
            &root.join("memory").join(c).join("memory.usage_in_bytes"),
            "10485760\n",
        );
        write(
            &root.join("memory").join(c).join("memory.stat"),
            "cache 0\ntotal_inactive_file 2097152\n",
        );
        write(
            &root.join("memory").join(c).join("memory.limit_in_bytes"),
            "67108864\n",
        );
        write(
            &root.join("cpuacct").join(c).join("cpuacct.usage"),
            "1500000000\n",
        );
        write(&root.join("pids").join(c).join("pids.current"), "3\n");
        write(
            &root
                .join("blkio")
                .join(c)
                .join("blkio.throttle.io_service_bytes"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n",
        );
    }

    fn fake_v2(root: &Path) {
        let c = root.join("berth/c1");
        write(&root.join("cgroup.controllers"), "cpu memory pids io\n");
        write(&c.join("memory.current"), "10485760\n");
        write(&c.join("memory.stat"), "anon 1\ninactive_file 2097152\n");
        write(&c.join("memory.max"), "67108864\n");
        write(
            &c.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\n",
        );
        write(&c.join("pids.current"), "3\n");
        write(
            &c.join("io.stat"),
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n",
        );
    }

    #[test]
    fn v1_and_v2_readers_agree_on_the_same_container() {
        let want = Usage {
            cpu_ns: 1_500_000_000,
            mem_bytes: 8 << 20,
            mem_limit: Some(64 << 20),
            pids: 3,
            blk_read: 4096,
            blk_write: 8192,
        };
        for fake in [fake_v1 as fn(&Path), fake_v2] {
            let d = tempfile::tempdir().unwrap();
            fake(d.path());
            assert_eq!(reader(d.path()).usage("/berth/c1").unwrap(), want);
        }
    }

    #[test]
    fn unlimited_memory_reads_as_none_in_both_versions() {
        let d = tempfile::tempdir().unwrap();
        fake_v1(d.path());
        std::fs::write(
            d.path().join("memory/berth/c1/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(reader(d.path()).usage("berth/c1").unwrap().mem_limit, None);
        let d = tempfile::tempdir().unwrap();
        fake_v2(d.path());
        std::fs::write(d.path().join("berth/c1/memory.max"), "max\n").unwrap();
        assert_eq!(reader(d.path()).usage("berth/c1").unwrap().mem_limit, None);
    }

    #[test]
    fn a_missing_cgroup_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fake_v2(d.path());
        assert!(reader(d.path()).usage("berth/gone").is_err());
    }

    #[test]
    fn cpu_percent_is_of_one_cpu() {
        let a = Usage {
            cpu_ns: 0,
            ..Default::default()
        };
        let b = Usage {
            cpu_ns: 500_000_000,
            ..Default::default()
        };
        assert!((cpu_percent(&a, &b, 1_000_000_000) - 50.0).abs() < 1e-9);
    }
}

/// New limits for a running container (`update`); None leaves a limit as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// bytes; -1 = unlimited
    pub memory: Option<i64>,
    /// memory + swap in bytes; -1 = unlimited
    pub memory_swap: Option<i64>,
    /// CPU quota per 100 ms period, in microseconds; -1 = unlimited
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    /// -1 = unlimited
    pub pids: Option<i64>,
}

/// Writes `limits` into the cgroup `rel` under `root` (v2 when `cgroup.controllers` is
/// there, else v1), in an order the kernel accepts (v1 wants memory+swap raised before
/// memory, lowered after).
pub fn apply_limits(root: &Path, rel: &str, limits: &Limits) -> std::io::Result<()> {
    let rel = rel.trim_start_matches('/');
    let w = |p: PathBuf, v: String| {
        std::fs::write(&p, v)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let v2 = root.join("cgroup.controllers").exists();
    if v2 {
        let dir = root.join(rel);
        let max = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(m) = limits.memory {
            w(dir.join("memory.max"), max(m))?;
        }
        if let Some(s) = limits.memory_swap {
            // v2 counts swap alone; Docker's value is memory + swap.
            let swap = match (s, limits.memory) {
                (s, _) if s < 0 => -1,
                (s, Some(m)) if m > 0 => (s - m).max(0),
                (s, _) => s,
            };
            w(dir.join("memory.swap.max"), max(swap))?;
        }
        if let Some(q) = limits.cpu_quota {
            w(dir.join("cpu.max"), format!("{} 100000", max(q)))?;
        }
        if let Some(sh) = limits.cpu_shares {
            // Docker's conversion from shares (2..262144) to weight (1..10000).
            let weight = 1 + ((sh.clamp(2, 262_144) - 2) * 9999) / 262_142;
            w(dir.join("cpu.weight"), weight.to_string())?;
        }
        if let Some(p) = limits.pids {
            w(dir.join("pids.max"), max(p))?;
        }
        return Ok(());
    }
    let mem = root.join("memory").join(rel);
    let order_swap_first = match (limits.memory, limits.memory_swap) {
        (Some(m), _) => {
            let current = std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|s| num(&s))
                .unwrap_or(0);
            m < 0 || (m as u64) > current
        }
        _ => true,
    };
    let set_mem = |v: i64| w(mem.join("memory.limit_in_bytes"), v.to_string());
    let set_swap = |v: i64| w(mem.join("memory.memsw.limit_in_bytes"), v.to_string());
    if order_swap_first {
        if let Some(s) = limits.memory_swap {
            set_swap(s)?;
        }
        if let Some(m) = limits.memory {
            set_mem(m)?;
        }
    } else {
        if let Some(m) = limits.memory {
            set_mem(m)?;
        }
        if let Some(s) = limits.memory_swap {
            set_swap(s)?;
        }
    }
    if let Some(q) = limits.cpu_quota {
        w(
            root.join("cpu").join(rel).join("cpu.cfs_period_us"),
            "100000".into(),
        )?;
        w(
            root.join("cpu").join(rel).join("cpu.cfs_quota_us"),
            q.to_string(),
        )?;
    }
    if let Some(sh) = limits.cpu_shares {
        w(
            root.join("cpu").join(rel).join("cpu.shares"),
            sh.to_string(),
        )?;
    }
    if let Some(p) = limits.pids {
        w(
            root.join("pids").join(rel).join("pids.max"),
            if p < 0 { "max".into() } else { p.to_string() },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn tree(v2: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        if v2 {
            std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
            std::fs::create_dir_all(d.path().join("berth/c1")).unwrap();
        } else {
            for h in ["memory", "cpu", "pids"] {
                std::fs::create_dir_all(d.path().join(h).join("berth/c1")).unwrap();
            }
            std::fs::write(
                d.path().join("memory/berth/c1/memory.limit_in_bytes"),
                "1048576\n",
            )
            .unwrap();
        }
        d
    }

    fn read(d: &Path, p: &str) -> String {
        std::fs::read_to_string(d.join(p)).unwrap()
    }

    #[test]
    fn limits_land_in_the_right_files_for_each_version() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_quota: Some(50_000),
            cpu_shares: Some(1024),
            pids: Some(20),
        };
        let d = tree(false);
        apply_limits(d.path(), "/berth/c1", &l).unwrap();
        assert_eq!(
            read(d.path(), "memory/berth/c1/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(d.path(), "memory/berth/c1/memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(read(d.path(), "cpu/berth/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read(d.path(), "cpu/berth/c1/cpu.shares"), "1024");
        assert_eq!(read(d.path(), "pids/berth/c1/pids.max"), "20");
        let d = tree(true);
        apply_limits(d.path(), "/berth/c1", &l).unwrap();
        assert_eq!(
            read(d.path(), "berth/c1/memory.max"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(d.path(), "berth/c1/memory.swap.max"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(d.path(), "berth/c1/cpu.max"), "50000 100000");
        assert_eq!(read(d.path(), "berth/c1/cpu.weight"), "39");
        assert_eq!(read(d.path(), "berth/c1/pids.max"), "20");
        apply_limits(
            d.path(),
            "/berth/c1",
            &Limits {
                pids: Some(-1),
                memory: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read(d.path(), "berth/c1/pids.max"), "max");
        assert_eq!(read(d.path(), "berth/c1/memory.max"), "max");
    }
}
