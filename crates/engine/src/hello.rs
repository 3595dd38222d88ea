//! The built-in `hello` image: one layer holding a tiny static program, made in code so
//! `berth run --rm hello` works offline on a fresh machine. It is deterministic: the same
//! bytes, and so the same image id, on every machine of one architecture.

use crate::error::{EngineError, Result};

pub const HELLO_REFERENCE: &str = "docker.io/library/hello:latest";
/// A fixed creation time keeps the image id stable.
pub const HELLO_CREATED: &str = "2026-01-01T00:00:00Z";

pub const MESSAGE: &str = "\
Hello from berth!
This message shows that your installation appears to be working correctly.

To print it, berth took these steps:
 1. It found the image \"hello\" built into berth and stored it: an immutable,
    content-addressed OCI image (its id is the digest of its config, its one layer
    is stored once and shared read-only by every container made from it).
 2. It made a container from that image: a copy-on-write overlay on the image's
    layer, so whatever the container changes never touches the image.
 3. It started the container isolated in its own pid, mount, uts, ipc, network
    and cgroup namespaces, with Docker's default capabilities and seccomp policy,
    under a berth monitor that captured this output into the container's log.
 4. It streamed that output to your terminal, and (with --rm) removed the
    container when the program exited. The image stays: run it again, or try
      berth images
      berth run -it --rm <image> sh
";

/// A minimal static ELF executable for the host architecture that writes `msg` to stdout
/// and exits 0.
pub fn program(msg: &[u8]) -> Result<Vec<u8>> {
    let (machine, code) = match std::env::consts::ARCH {
        "x86_64" => {
            let mut c = Vec::new();
            c.extend_from_slice(&[0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
            c.extend_from_slice(&[0xbf, 1, 0, 0, 0]); // mov edi, 1
            c.extend_from_slice(&[0x48, 0x8d, 0x35, 16, 0, 0, 0]); // lea rsi, [rip+16]
            c.push(0xba); // mov edx, len
            c.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            c.extend_from_slice(&[0x0f, 0x05]); // syscall
            c.extend_from_slice(&[0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
            c.extend_from_slice(&[0x31, 0xff]); // xor edi, edi
            c.extend_from_slice(&[0x0f, 0x05]); // syscall
            debug_assert_eq!(c.len(), 33);
            (62u16, c)
        }
        "aarch64" => {
            if msg.len() >= 1 << 16 {
                return Err(EngineError::Invalid("hello message too long".into()));
            }
            let words: [u32; 8] = [
                0xd280_0020,                                 // mov x0, #1
                0x1000_00e1,                                 // adr x1, .+28
                0xd280_0000 | ((msg.len() as u32) << 5) | 2, // mov x2, #len
                0xd280_0808,                                 // mov x8, #64 (write)
                0xd400_0001,                                 // svc #0
                0xd280_0000,                                 // mov x0, #0
                0xd280_0ba8,                                 // mov x8, #93 (exit)
                0xd400_0001,                                 // svc #0
            ];
            (183u16, words.iter().flat_map(|w| w.to_le_bytes()).collect())
        }
        other => {
            return Err(EngineError::Invalid(format!(
                "the built-in hello image is not available for {other}"
            )))
        }
    };
    const BASE: u64 = 0x400000;
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let entry = BASE + EHDR + PHDR;
    let total = EHDR + PHDR + code.len() as u64 + msg.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&machine.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // version
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&EHDR.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&(EHDR as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
                                              // PT_LOAD, R+X, the whole file
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(&code);
    e.extend_from_slice(msg);
    Ok(e)
}

/// The hello image's single layer: `/hello`, as a deterministic tar.
pub fn layer_tar() -> Result<Vec<u8>> {
    let prog = program(MESSAGE.as_bytes())?;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(prog.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_767_225_600); // HELLO_CREATED
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, "hello", &prog[..])
        .map_err(crate::error::io_err("hello layer"))?;
    b.into_inner().map_err(crate::error::io_err("hello layer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_program_runs_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hello");
        std::fs::write(&p, program(b"hi there\n").unwrap()).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&p).output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi there\n");
    }

    #[test]
    fn hello_layer_is_deterministic() {
        assert_eq!(layer_tar().unwrap(), layer_tar().unwrap());
    }
}
